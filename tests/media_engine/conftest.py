"""Fixtures: a started MediaEngine on 127.0.0.1 with its own random port range, torn down leak-free."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bridgeline.adapters.carriers.sip.media_engine import LatchPolicy, MediaEngine
from bridgeline.adapters.carriers.sip.music_fetch import MediaLimits

HERE = Path(__file__).resolve().parent
sys.path.insert(
    0, str(HERE.parent / "media")
)  # peer_audio.py: a test phone's audio, shared with the runtime tests

from media_peer import port_range  # noqa: E402


async def running_engine(latch: LatchPolicy, media_dir: Path) -> AsyncIterator[MediaEngine]:
    low, high = port_range(120)
    eng = MediaEngine(port_min=low, port_max=high, latch=latch, media=MediaLimits(media_dir=media_dir))
    await eng.start()
    try:
        yield eng
    finally:
        await eng.stop()
        assert eng.stats["open_sockets"] == 0
        assert eng.stats["free_ports"] == eng.port_capacity


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[MediaEngine]:
    async for eng in running_engine(LatchPolicy(), tmp_path):  # media files: tmp_path
        yield eng
