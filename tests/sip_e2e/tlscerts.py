"""Throw-away TLS material for tests, made with the openssl CLI at test time (nothing committed):
a CA, a server certificate it signed for 127.0.0.1/localhost, and a certificate from a second CA
nobody trusts."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"]


@dataclass(frozen=True, slots=True)
class CertFiles:
    ca: Path  # the CA certificate peers trust
    certificate: Path  # signed by `ca`, for IP 127.0.0.1 and DNS localhost
    key: Path
    combined: Path  # certificate then key, in one file (baresip's sip_certificate)
    rogue_certificate: Path  # from a CA nobody trusts, also for 127.0.0.1
    rogue_key: Path


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)


def make_certs(root: Path) -> CertFiles:
    root.mkdir(parents=True, exist_ok=True)
    names = {}
    for ca in ("ca", "rogue-ca"):
        _openssl("req", "-x509", *EC, "-subj", f"/CN=bridgeline-test-{ca}",
                 "-keyout", str(root / f"{ca}.key"), "-out", str(root / f"{ca}.crt"))  # fmt: skip
    for name, ca in (("server", "ca"), ("rogue", "rogue-ca")):
        _openssl("req", "-x509", *EC, "-subj", "/CN=localhost",
                 "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                 "-addext", "basicConstraints=critical,CA:FALSE",
                 "-CA", str(root / f"{ca}.crt"), "-CAkey", str(root / f"{ca}.key"),
                 "-keyout", str(root / f"{name}.key"), "-out", str(root / f"{name}.crt"))  # fmt: skip
        names[name] = (root / f"{name}.crt", root / f"{name}.key")
    combined = root / "server-combined.pem"
    combined.write_bytes(names["server"][0].read_bytes() + names["server"][1].read_bytes())
    return CertFiles(root / "ca.crt", *names["server"], combined, *names["rogue"])
