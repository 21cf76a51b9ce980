"""parse_range: what a download answers for every Range header (206 slice, 200 whole, 416)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridgeline.adapters.recordings.ranges import (
    MAX_HEADER_CHARS,
    ByteRange,
    RangeNotSatisfiable,
    parse_range,
)

sizes = st.integers(min_value=0, max_value=10**12)
offsets = st.integers(min_value=0, max_value=10**13)


@given(total=sizes, first=offsets, last=offsets)
def test_a_first_last_range_is_the_slice_a_list_would_give(total: int, first: int, last: int) -> None:
    header = f"bytes={first}-{last}"
    if last < first:
        assert parse_range(header, total) is None  # invalid: ignored, the whole file is served
    elif first >= total:
        with pytest.raises(RangeNotSatisfiable) as refused:
            parse_range(header, total)
        assert refused.value.content_range == f"bytes */{total}"
    else:
        got = parse_range(header, total)
        assert got == ByteRange(first, min(last, total - 1), total)
        assert got.length == len(range(total)[first : last + 1])


@given(total=sizes, first=offsets)
def test_an_open_range_runs_to_the_end(total: int, first: int) -> None:
    if first >= total:
        with pytest.raises(RangeNotSatisfiable):
            parse_range(f"bytes={first}-", total)
    else:
        got = parse_range(f"bytes={first}-", total)
        assert got is not None and (got.start, got.end) == (first, total - 1)
        assert got.content_range == f"bytes {first}-{total - 1}/{total}"


@given(total=sizes, suffix=offsets)
def test_a_suffix_range_is_the_last_bytes(total: int, suffix: int) -> None:
    if suffix == 0 or total == 0:
        with pytest.raises(RangeNotSatisfiable):
            parse_range(f"bytes=-{suffix}", total)
    else:
        got = parse_range(f"bytes=-{suffix}", total)
        assert got is not None and (got.start, got.end) == (max(0, total - suffix), total - 1)
        assert got.length == min(suffix, total)


@given(header=st.text(max_size=300), total=sizes)
def test_any_header_gives_a_valid_range_none_or_416(header: str, total: int) -> None:
    try:
        got = parse_range(header, total)
    except RangeNotSatisfiable as refused:
        assert refused.total == total
        return
    if got is not None:
        assert 0 <= got.start <= got.end < total == got.total


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "bytes=",
        "bytes=-",
        "bytes=0-1,5-9",  # several ranges: served whole (decided, docs)
        "items=0-1",
        "bytes=a-b",
        "bytes=0x10-",
        "bytes=1-0",
        "bytes=99999999999999999999-",  # 20 digits: not a number we read
        "bytes=0-" + "1" * MAX_HEADER_CHARS,
        "bytes=٣-٤",  # Arabic-Indic digits are digits to str.isdigit, not to HTTP
    ],
)
def test_what_is_ignored_serves_the_whole_file(header: str | None) -> None:
    assert parse_range(header, 1000) is None


def test_spaces_around_a_plain_range_are_tolerated() -> None:
    assert parse_range(" bytes=0-9 ", 100) == ByteRange(0, 9, 100)
