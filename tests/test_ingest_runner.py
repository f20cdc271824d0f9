"""`longvid ingest`: config forms, outputs, duplicate ids, atomic failure, s3:// roots."""

from __future__ import annotations

import io
import json

import pyarrow.parquet as pq
import pytest

from longvid import storage
from longvid.cli import main
from longvid.schema import MANIFEST_SCHEMA, REJECTS_SCHEMA
from tests.ingest_util import write_csv

HEADER = ["videoid", "contentUrl", "duration", "page_dir", "name"]


@pytest.fixture
def webvid(tmp_path):
    root = tmp_path / "webvid"
    write_csv(root / "results_10M_train.csv", HEADER, [
        ["1", "u1", "PT00H00M10S", "000001_000050", "One."],
        ["2", "u2", "PT00H00M11S", "000001_000050", "Two."],
        ["1", "u1", "PT00H00M10S", "000001_000050", "One again."],  # duplicate id
        ["3", "u3", "PT1H", "000001_000050", ""],  # missing caption
    ])  # fmt: skip
    return root


def _tables(out):
    manifest = pq.read_table(out / "manifest.parquet")
    rejects = pq.read_table(out / "rejects.parquet")
    return manifest, rejects


def test_cli_without_config(webvid, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(
        ["ingest", "--source", "webvid", "--root", str(webvid), "--out", str(out), "--no-progress"]
    )
    assert code == 0
    manifest, rejects = _tables(out)
    assert manifest.schema.equals(MANIFEST_SCHEMA) and rejects.schema.equals(REJECTS_SCHEMA)
    rows = manifest.to_pylist()
    assert [r["record_id"] for r in rows] == ["webvid:000001_000050_1", "webvid:000001_000050_2"]
    assert rows[0]["texts"] == [
        {"start": 0.0, "end": 10.0, "text": "One.", "kind": "title", "origin": "name"}
    ]
    assert json.loads(rows[0]["raw"])["contentUrl"] == "u1"
    bad = rejects.to_pylist()
    assert [(r["locator"], r["reason"], r["stage"]) for r in bad] == [
        ("results_10M_train.csv:4", "duplicate_id", "ingest"),
        ("results_10M_train.csv:5", "missing_field", "ingest"),
    ]
    assert bad[0]["record_id"] == "webvid:000001_000050_1"
    assert len(rows) + len(bad) == 4  # every CSV row
    printed = capsys.readouterr().out
    line = next(x for x in printed.splitlines() if x.startswith("webvid"))
    assert line.split()[:5] == ["webvid", "4", "2", "2", "2"]
    assert "duplicate_id 1" in line and "missing_field 1" in line
    summary = json.loads((out / "ingest_summary.json").read_text())
    assert summary["sources"][0]["inputs"] == 4 and summary["sources"][0]["accepted"] == 2
    assert summary["manifest_rows"] == 2 and summary["reject_rows"] == 2


def test_cli_with_source_yaml_and_overrides(webvid, tmp_path):
    out = tmp_path / "out"
    code = main(
        [
            "ingest",
            "conf/sources/webvid.yaml",
            f"root={webvid}",
            "max_records=2",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0
    manifest, rejects = _tables(out)
    assert manifest.num_rows == 2 and rejects.num_rows == 0


def test_cli_with_a_build_config_takes_its_sources(webvid, tmp_path):
    other = tmp_path / "mine"
    (other / "sub").mkdir(parents=True)
    (other / "sub" / "clip.mp4").write_bytes(b"x")
    build = tmp_path / "build.yaml"
    build.write_text(
        "output:\n  root: /somewhere\nray:\n  num_cpus: 1\nsources:\n"
        f"  - name: webvid\n    root: {webvid}\n  - name: generic\n    root: {other}\n"
    )
    out = tmp_path / "out"
    assert main(["ingest", str(build), "--out", str(out), "--no-progress"]) == 0
    ids = [r["record_id"] for r in pq.read_table(out / "manifest.parquet").to_pylist()]
    assert ids == ["webvid:000001_000050_1", "webvid:000001_000050_2", "generic:sub__clip"]


def test_config_errors_name_the_key(webvid, tmp_path, capsys):
    code = main(
        [
            "ingest",
            "--source",
            "webvid",
            "--root",
            str(webvid),
            "video_dirr=x",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert code == 2
    assert "video_dirr: unknown key" in capsys.readouterr().err


def test_wrong_format_fails_with_one_line_and_keeps_old_outputs(webvid, tmp_path, capsys):
    out = tmp_path / "out"
    assert (
        main(
            [
                "ingest",
                "--source",
                "webvid",
                "--root",
                str(webvid),
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    before = (out / "manifest.parquet").read_bytes()
    capsys.readouterr()
    write_csv(webvid / "results_10M_train.csv", ["id", "caption"], [["1", "x"]])
    code = main(
        ["ingest", "--source", "webvid", "--root", str(webvid), "--out", str(out), "--no-progress"]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("longvid: error: ")
    assert "results_10M_train.csv: not a WebVid results CSV" in err and "['id', 'caption']" in err
    assert (out / "manifest.parquet").read_bytes() == before


def test_missing_root_needs_source_and_root(capsys):
    assert main(["ingest", "--source", "webvid"]) == 2
    assert "--source NAME and --root DIR" in capsys.readouterr().err


# ----------------------------------------------------------------------------- s3:// roots


def _corpus(tmp_path_factory):
    from longvid.samples.corpus import write_sample_corpus

    root = tmp_path_factory.mktemp("meta-corpus")
    write_sample_corpus(root, render=False)
    return root


SOURCE_ARGS = {
    "ego4d": [], "howto100m": [], "hdvila": [], "miradata": [], "webvid": [],
    "generic": ["manifest=manifest.jsonl"],
}  # fmt: skip


@pytest.mark.parametrize("source", sorted(SOURCE_ARGS))
def test_s3_roots_give_s3_uris_and_the_same_records(source, s3_server, tmp_path, tmp_path_factory):
    corpus = _corpus(tmp_path_factory)
    prefix = f"releases-{source}"
    # upload (rather than copy into the served folder: the server caches folder listings)
    for path in sorted((corpus / source).rglob("*")):
        if path.is_file():
            rel = path.relative_to(corpus).as_posix()
            storage.upload_file(path, s3_server.uri(f"{prefix}/{rel}"))
    local_out, s3_out = tmp_path / "local", s3_server.uri(f"out-{source}")
    assert (
        main(
            [
                "ingest",
                "--source",
                source,
                "--root",
                str(corpus / source),
                "--out",
                str(local_out),
                "--no-progress",
                *SOURCE_ARGS[source],
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "ingest",
                "--source",
                source,
                "--root",
                s3_server.uri(f"{prefix}/{source}"),
                "--out",
                s3_out,
                "--no-progress",
                *SOURCE_ARGS[source],
            ]
        )
        == 0
    )
    local = pq.read_table(local_out / "manifest.parquet").to_pylist()
    remote = pq.read_table(io.BytesIO(storage.read_bytes(f"{s3_out}/manifest.parquet")))
    remote = remote.to_pylist()
    assert len(remote) == len(local) > 0
    local_root = str(corpus / source)
    s3_root = s3_server.uri(f"{prefix}/{source}")
    for a, b in zip(local, remote, strict=True):
        assert b["video_uri"].startswith(s3_root + "/")
        assert b["video_uri"][len(s3_root) :] == a["video_uri"][len(local_root) :]
        assert {k: v for k, v in b.items() if k != "video_uri"} == {
            k: v for k, v in a.items() if k != "video_uri"
        }
    rejects = pq.read_table(io.BytesIO(storage.read_bytes(f"{s3_out}/rejects.parquet")))
    assert rejects.num_rows == 0


def test_fast_manifest_row_equals_as_row(tmp_path_factory):
    from longvid.ingest.config import SOURCE_MODELS
    from longvid.ingest.runner import manifest_row
    from tests.ingest_util import collect

    corpus = _corpus(tmp_path_factory)
    checked = 0
    for name, model in SOURCE_MODELS.items():
        extra = {"manifest": "manifest.jsonl"} if name == "generic" else {}
        records, _ = collect(model(root=str(corpus / name), **extra))
        for rec in records:
            assert manifest_row(rec) == rec.as_row()
            checked += 1
    assert checked == 18


def test_s3_folder_listing_for_the_generic_source(s3_server, tmp_path):
    for rel in ("gen/a.mp4", "gen/sub/b.webm", "gen/notes.txt"):
        storage.write_bytes(s3_server.uri(rel), b"x")
    out = s3_server.uri("out-generic-folder")
    assert (
        main(
            [
                "ingest",
                "--source",
                "generic",
                "--root",
                s3_server.uri("gen"),
                "--out",
                out,
                "--no-progress",
            ]
        )
        == 0
    )
    rows = pq.read_table(io.BytesIO(storage.read_bytes(f"{out}/manifest.parquet"))).to_pylist()
    assert [(r["video_id"], r["video_uri"]) for r in rows] == [
        ("a", s3_server.uri("gen/a.mp4")),
        ("sub__b", s3_server.uri("gen/sub/b.webm")),
    ]
