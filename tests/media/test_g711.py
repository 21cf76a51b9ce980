"""G.711 tables are bit-exact with CPython 3.11's audioop over every input."""

from __future__ import annotations

import sys
import warnings
from types import ModuleType

import numpy as np
import pytest

from bridgeline.media import g711

ALL_SAMPLES = np.arange(-32768, 32768, dtype=np.int16)
ALL_CODES = bytes(range(256))


@pytest.fixture(scope="module")
def audioop() -> ModuleType:
    if sys.version_info >= (3, 13):
        pytest.skip("audioop was removed in Python 3.13")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop as module
    return module


def test_ulaw_encode_matches_audioop(audioop: ModuleType) -> None:
    expected = audioop.lin2ulaw(ALL_SAMPLES.tobytes(), 2)
    assert g711.ulaw_encode(ALL_SAMPLES) == expected


def test_alaw_encode_matches_audioop(audioop: ModuleType) -> None:
    expected = audioop.lin2alaw(ALL_SAMPLES.tobytes(), 2)
    assert g711.alaw_encode(ALL_SAMPLES) == expected


def test_ulaw_decode_matches_audioop(audioop: ModuleType) -> None:
    assert g711.ulaw_decode(ALL_CODES).tobytes() == audioop.ulaw2lin(ALL_CODES, 2)


def test_alaw_decode_matches_audioop(audioop: ModuleType) -> None:
    assert g711.alaw_decode(ALL_CODES).tobytes() == audioop.alaw2lin(ALL_CODES, 2)


def test_reference_values() -> None:
    assert g711.ulaw_decode(b"\xff\x7f").tolist() == [0, 0]  # the two mu-law zeros
    assert g711.ulaw_decode(b"\x00\x80").tolist() == [-32124, 32124]  # full scale
    assert g711.alaw_decode(b"\xd5\x55").tolist() == [8, -8]  # smallest A-law steps
    assert g711.alaw_decode(b"\x2a\xaa").tolist() == [-32256, 32256]
    assert g711.ulaw_encode(np.array([0, 32767, -32768], dtype=np.int16)) == b"\xff\x80\x00"
    assert g711.alaw_encode(np.array([0, 32767, -32768], dtype=np.int16)) == b"\xd5\xaa\x2a"


def test_codes_round_trip_through_linear() -> None:
    codes = np.arange(256, dtype=np.uint8)
    assert (g711.alaw_encode_array(g711.alaw_decode(codes)) == codes).all()
    # mu-law has two codes for zero (0x7F and 0xFF); every other code survives the round trip.
    back = g711.ulaw_encode_array(g711.ulaw_decode(codes))
    assert (back == codes).sum() == 255 and back[0x7F] == 0xFF


def test_array_forms_and_payload_type_dispatch() -> None:
    pcm = np.array([[0, 1000], [-1000, 20000]], dtype=np.int16)
    codes = g711.ulaw_encode_array(pcm)
    assert codes.shape == (2, 2) and codes.dtype == np.uint8
    assert (g711.encode_array(g711.PCMU, pcm) == codes).all()
    assert (g711.decode(g711.PCMA, g711.alaw_encode(pcm)) == g711.alaw_decode(g711.alaw_encode(pcm))).all()
    assert (g711.ulaw_decode(codes) == g711.decode(g711.PCMU, codes.tobytes()).reshape(2, 2)).all()
    assert g711.is_g711(0) and g711.is_g711(8) and not g711.is_g711(101)
    with pytest.raises(KeyError):
        g711.decode(101, b"\x00")


def test_encode_rejects_wrong_dtype() -> None:
    with pytest.raises(TypeError):
        g711.ulaw_encode(np.zeros(4, dtype=np.int32))


def test_tables_are_read_only() -> None:
    with pytest.raises(ValueError):
        g711.ULAW_DECODE_TABLE[0] = 1
