"""The documentation holds together: every relative link in README.md and docs/*.md reaches a
file in the repository (and a #anchor reaches a heading of that file), the README stays a short
overview that shows the two commands, and nothing in the repository points at files outside it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
DOC_FILES = [README, *sorted((REPO / "docs").glob("*.md"))]
README_MAX_CHARS = 15_000

# A Markdown link or image: [text](target) or ![alt](target "title").
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~)")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")

# What a pointer out of the repository looks like: the old design notes beside the checkout,
# a parent folder named shared, or this machine's worktree paths.
OUTSIDE_MARKERS = ("shared/docs", "../shared", "/work/wt/", "/work/main")
SCANNED = ["longvid", "tests", "bench", "conf", "docs"]
SCANNED_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".txt", ".cfg", ".ini", ".json"}


def prose_lines(text: str) -> list[str]:
    """The lines of a Markdown file outside fenced code blocks, with inline code removed."""
    lines, in_fence = [], False
    for line in text.splitlines():
        if FENCE.match(line.lstrip()):
            in_fence = not in_fence
            continue
        if not in_fence:
            lines.append(INLINE_CODE.sub("", line))
    return lines


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading: its text
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file (repeats get -1, -2, ... as on GitHub)."""
    seen: dict[str, int] = {}
    out = set()
    in_fence = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line.lstrip()):
            in_fence = not in_fence
            continue
        match = None if in_fence else HEADING.match(line)
        if match:
            slug = github_slug(match.group(2))
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def relative_links(path: Path) -> list[str]:
    links = []
    for line in prose_lines(path.read_text(encoding="utf-8")):
        for target in LINK.findall(line):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
                continue  # http:, https:, mailto: ... are not files of the repository
            links.append(target)
    return links


def test_docs_exist():
    names = {p.name for p in DOC_FILES}
    for page in ("design.md", "ingest.md", "build.md", "annotate.md", "loader.md", "model.md",
                 "training.md", "audit.md", "storage.md", "configuration.md", "media.md",
                 "sample-corpus.md"):
        assert page in names, f"docs/{page} is missing"


@pytest.mark.parametrize("doc", DOC_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(doc: Path):
    problems = []
    for target in relative_links(doc):
        file_part, _, anchor = target.partition("#")
        dest = (doc.parent / file_part).resolve() if file_part else doc
        if not dest.is_relative_to(REPO):
            problems.append(f"{target}: leaves the repository")
            continue
        if not dest.exists():
            problems.append(f"{target}: no such file")
            continue
        if anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            problems.append(f"{target}: no heading #{anchor} in {dest.relative_to(REPO)}")
    assert not problems, f"{doc.relative_to(REPO)}: " + "; ".join(problems)


def test_readme_links_every_docs_page():
    linked = {
        (README.parent / t.partition("#")[0]).resolve() for t in relative_links(README)
    }
    unlinked = [p.name for p in DOC_FILES[1:] if p.resolve() not in linked]
    assert not unlinked, f"README.md does not link docs/{', docs/'.join(unlinked)}"


def test_readme_is_short_and_shows_the_two_commands():
    text = README.read_text(encoding="utf-8")
    assert len(text) <= README_MAX_CHARS, f"README.md has {len(text)} characters"
    assert "make demo" in text
    assert "make test" in text


def test_slug_rules():
    assert github_slug("Export for VideoChat-Flash's trainer") == (
        "export-for-videochat-flashs-trainer"
    )
    assert github_slug("Resume, exactly once") == "resume-exactly-once"
    assert github_slug("`longvid.storage` API") == "longvidstorage-api"


def test_nothing_points_outside_the_repository():
    files = [README, *(
        p for folder in SCANNED for p in sorted((REPO / folder).rglob("*"))
        if p.is_file() and p.suffix in SCANNED_SUFFIXES
    )]
    this_file = Path(__file__).resolve()
    hits = []
    for path in files:
        if path.resolve() == this_file:
            continue  # it names the markers it looks for
        text = path.read_text(encoding="utf-8", errors="replace")
        for marker in OUTSIDE_MARKERS:
            if marker in text:
                line = text[: text.index(marker)].count("\n") + 1
                hits.append(f"{path.relative_to(REPO)}:{line}: {marker}")
    assert not hits, "files point outside the repository: " + "; ".join(hits)
