"""Item 7 for live mode: ``send``/``recv --out`` that cannot be a folder exit 2 at once."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.mark.parametrize("side", ["send", "recv"])
def test_live_out_that_is_a_file(tmp_path: Path, side: str) -> None:
    import subprocess
    import sys

    from tests.adversarial.helpers import live_scenario

    (tmp_path / "afile").write_text("x")
    args = (["send", "--scenario", str(live_scenario(tmp_path)), "--bind", "tcp://127.0.0.1:1"]
            if side == "send" else ["recv", "--connect", "tcp://127.0.0.1:1"])
    p = subprocess.run([sys.executable, "-m", "diffstream", *args, "--out",
                        str(tmp_path / "afile"), "--wait", "1", "--no-dashboard",
                        "--log", str(tmp_path / "l.log")],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert p.returncode == 2 and "--out" in p.stderr and "Traceback" not in p.stderr, p.stderr


def test_live_stream_too_long_for_memory(tmp_path: Path) -> None:
    """The end-of-stream report holds every record: a stream that cannot fit is refused
    before the sender binds or writes anything."""
    import subprocess
    import sys

    import psutil

    from tests.adversarial.helpers import live_scenario

    if psutil.virtual_memory().available > 500 * 2**30:
        pytest.skip("this machine could hold such a stream")
    p = subprocess.run([sys.executable, "-m", "diffstream", "send", "--scenario",
                        str(live_scenario(tmp_path)), "--bind", "tcp://127.0.0.1:1",
                        "--duration", "5000000", "--out", str(tmp_path / "s"), "--wait", "1",
                        "--no-dashboard", "--log", str(tmp_path / "l.log")],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert p.returncode == 2 and "GiB" in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert not (tmp_path / "s").exists()
