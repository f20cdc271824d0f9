"""Sample keys: deterministic, safe as webdataset member names, unique for distinct inputs."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from longvid.schema import SOURCES, sample_key


def test_plain_id_is_kept_readable():
    assert sample_key("howto100m", "-abc_DEF12", 1.5, 62.25) == "howto100m_-abc_DEF12_000001500_000062250"


def test_unsafe_ids_are_sanitised_and_disambiguated():
    a = sample_key("webvid", "page/1.mp4", 0, 10)
    b = sample_key("webvid", "page_1_mp4", 0, 10)
    assert "/" not in a and "." not in a
    assert a != b


@given(
    source=st.sampled_from(SOURCES),
    video_id=st.text(min_size=1, max_size=300),
    start=st.floats(0, 360000),
    length=st.floats(0.001, 36000),
)
def test_keys_fit_member_names_and_are_deterministic(source, video_id, start, length):
    key = sample_key(source, video_id, start, start + length)
    assert key == sample_key(source, video_id, start, start + length)
    assert len(f"{key}.emb.npy") <= 100
    assert all(c.isascii() and (c.isalnum() or c in "_-") for c in key)
