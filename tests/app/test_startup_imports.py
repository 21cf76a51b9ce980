"""What a server start imports: a sim server never loads the SIP carrier (nor its numpy media), which
would cost every start a fifth of its time (the test suites start dozens of servers)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BUILD_A_SIM_SERVER = """
import asyncio, sys
from pathlib import Path
from bridgeline.config import Settings
from bridgeline.main import build

async def start_and_stop() -> None:
    settings = Settings(data_dir=Path(sys.argv[1]), auth_id="MASTARTUPIMPORTS0001", auth_token="t" * 24)
    await (await build(settings)).stop()

asyncio.run(start_and_stop())
print(sorted(m for m in sys.modules if m.startswith("bridgeline.adapters.carriers.sip") or m == "numpy"))
"""


def test_a_sim_server_starts_without_loading_the_sip_carrier(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", BUILD_A_SIM_SERVER, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    loaded = done.stdout.strip().splitlines()[-1]  # after the server's own log lines
    assert loaded == "[]", done.stdout
