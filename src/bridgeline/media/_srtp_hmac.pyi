# The C extension _srtp_hmac.c: libsrtp's HMAC-SHA1, ours (compact) or its own.
import os

def install(binding_path: str | os.PathLike[str], compact: bool, /) -> int: ...
