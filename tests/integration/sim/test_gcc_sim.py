"""GCC in the simulator on a step drop (network-only, in process): it uses the link before
the drop, backs off after it, and the queueing delay it built recovers; the same scenario
and seed give the same records."""

from __future__ import annotations

from pathlib import Path

from diffstream.pipeline.records import NETWORK_COLUMNS, FrameRecord
from diffstream.scenario.build import build_trace
from diffstream.scenario.load import load_scenario
from diffstream.sim.arm import ArmSimulation
from diffstream.sim.endpoints import NetworkOnlyEndpoints
from tests.conftest import tiny_scenario

DROP_S = 10.0  # 100 kbit/s (2 Mbit/s x share 0.05), then 50 kbit/s
BASE_S = 0.02


def _run(tmp_path: Path) -> list[FrameRecord]:
    path = tiny_scenario(
        tmp_path, duration_s=20.0, seed=5,
        trace={"kind": "steps", "steps": [[0, 2.0], [DROP_S, 1.0]], "duration_s": 60},
        link={"share": 0.05, "delay_ms": BASE_S * 1000, "queue": {"bytes": 5000}},
        arms=[{"codec": "jpeg", "policy": {"kind": "gcc", "start_rate_bps": 60_000}}])
    sc, spath = load_scenario(path)
    trace = build_trace(sc, spath).scaled(sc.link.share)
    sim = ArmSimulation(sc, sc.arms[0], trace, NetworkOnlyEndpoints(sc, None), calibrate=False)
    return sim.run().records


def _rate_bps(recs: list[FrameRecord], t0: float, t1: float) -> float:
    return sum(r.wire_bytes for r in recs if t0 <= r.capture_s < t1) * 8 / (t1 - t0)


def _max_owd(recs: list[FrameRecord], t0: float, t1: float) -> float:
    return max(r.last_arrival_s - r.send_s for r in recs
               if t0 <= r.capture_s < t1 and r.last_arrival_s is not None)


def test_gcc_backs_off_after_a_step_drop_and_delay_recovers(tmp_path: Path) -> None:
    recs = _run(tmp_path)
    assert _rate_bps(recs, 7.0, DROP_S) > 80_000  # it had found the 100 kbit/s link
    assert _max_owd(recs, DROP_S, DROP_S + 2) > 0.4  # the drop builds a queue
    assert _rate_bps(recs, DROP_S + 2, DROP_S + 4) < 0.9 * 50_000  # backed off below it
    assert _max_owd(recs, DROP_S + 4, DROP_S + 6) < BASE_S + 0.15  # the queue drained
    (tmp_path / "again").mkdir()
    again = _run(tmp_path / "again")
    cols = list(NETWORK_COLUMNS)
    assert [[getattr(r, c) for c in cols] for r in recs] == [
        [getattr(r, c) for c in cols] for r in again]
