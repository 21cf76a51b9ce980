# The C extension _srtp_call.c: libsrtp's per-packet functions called from C.
from collections.abc import Callable
from typing import Final, TypeVar

_Dest = TypeVar("_Dest")
_Kind = TypeVar("_Kind", bound=str)

BUFFER_SIZE: Final[int]

class Processor:
    def __init__(
        self,
        function: int,
        session: int,
        owner: object,
        refuse: Callable[[int], BaseException],
        max_packet: int,
    ) -> None: ...
    def __call__(self, packet: bytes | bytearray | memoryview, /) -> bytes: ...

def protect_all(
    pending: list[tuple[str, bytes, _Dest, Processor]], out: list[tuple[str, bytes, _Dest]], /
) -> int: ...
def unprotect_all(
    arrived: list[tuple[str, _Kind, bytes, _Dest]], inbound: dict[str, Processor], /
) -> list[bytes | int | None]: ...
