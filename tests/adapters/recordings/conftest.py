"""A real S3-protocol server for the object-storage tests: moto's server on 127.0.0.1, a free port."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import boto3
import pytest
from moto.server import ThreadedMotoServer
from recordkit import S3_KEY, S3_SECRET


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(moto_endpoint: str) -> str:
    """A new, empty bucket on the moto server."""
    name = "rec-" + secrets.token_hex(6)
    client = boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id=S3_KEY,
        aws_secret_access_key=S3_SECRET,
    )
    client.create_bucket(Bucket=name)
    return name
