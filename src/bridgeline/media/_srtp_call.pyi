# The C extension _srtp_call.c: libsrtp's per-packet functions called from C.
from collections.abc import Callable
from typing import Final

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
