"""The compiled network-only loop (``sim.kernel`` via ``sim.compiled``) against the Python fast
path (``sim.fastpath`` with ``DIFFSTREAM_KERNEL=0``): every record column equal, byte for
byte as frames.jsonl writes them, plus the link counters and the end time, on a grid of
traces x loss models x queues x payloads with every policy variant the kernel covers.
(``test_fastpath_agreement.py`` checks the same arms against the full SimPy loop.)"""

from __future__ import annotations

import json
import subprocess
import sys
import zlib
from typing import Any

import pytest

from diffstream.scenario.build import build_trace
from diffstream.scenario.schema import Scenario
from diffstream.sim import compiled
from diffstream.sim.endpoints import NetworkOnlyEndpoints
from diffstream.sim.fastpath import FastArmSimulation
from tests.conftest import ROOT
from tests.integration.sim.tie_scenario import tie_scenario

pytestmark = pytest.mark.skipif(not compiled.kernel_available(),
                                reason="numba is not installed")

KERNEL_POLICIES: list[dict[str, Any]] = [
    {"kind": "fixed", "bpp": 0.5},
    {"kind": "fixed", "bpp": 0.03},
    {"kind": "rate"},
    {"kind": "rate", "window": 3, "safety": 0.5, "startup_bpp": 1.5},
    {"kind": "rate", "predictor": {"kind": "harmonic", "window": 9}},
    {"kind": "mpc"},
    {"kind": "mpc", "horizon": 2, "levels_bpp": [0.05, 0.4, 3.0], "switch_weight": 0.0},
    {"kind": "mpc", "window": 2, "stall_weight": 500.0, "startup_bpp": 2.0},
    {"kind": "mpc", "predictor": {"kind": "harmonic", "window": 4, "robust": True}},
    {"kind": "mpc", "horizon": 1},
    {"kind": "mpc", "horizon": 5, "levels_bpp": [0.1, 0.3, 0.9, 2.7]},
    {"kind": "deadline"},
    {"kind": "deadline", "robust": False, "burst_frames": None, "safety": 0.7},
    {"kind": "deadline", "predictor": {"kind": "harmonic", "window": 3, "robust": True}},
    {"kind": "oracle"},
]
TRACES = {
    "lte": {"kind": "mahimahi", "path": str(ROOT / "scenarios/traces/lte_like.down")},
    "markov": {"kind": "markov", "duration_s": 30},
    "constant": {"kind": "constant", "mbps": 2.0, "duration_s": 10},
}
LOSSES = {
    "none": None,
    "bernoulli": {"kind": "bernoulli", "p": 0.05},
    "bursty": {"kind": "gilbert_elliott", "p_good_to_bad": 0.05, "p_bad_to_good": 0.3,
               "loss_bad": 0.6},
}
QUEUES = {"bytes": {"bytes": 30000}, "packets": {"packets": 8}, "unlimited": None}
MODES = {
    "interactive": {"kind": "interactive", "target_latency_ms": 200},
    "playback": {"kind": "playback", "startup_s": 0.5, "max_buffer_s": 2.0,
                 "max_outstanding": 3},
    "playback-deep": {"kind": "playback"},  # the defaults: 1 s startup, 4 s buffer
}


def _scenario(trace: dict, loss: dict | None, queue: dict | None, *, duration: float = 4.0,
              fps: float = 30.0, policies: list[dict] | None = None,
              share: float = 0.2, mode: str = "interactive") -> Scenario:
    link: dict[str, Any] = {"share": share, "delay_ms": 30}
    if loss is not None:
        link["loss"] = loss
    if queue is not None:
        link["queue"] = queue
    return Scenario.model_validate({
        "name": "kernel", "seed": 11, "duration_s": duration,
        "frame": {"width": 128, "height": 128, "fps": fps},
        "mode": MODES[mode], "trace": trace, "link": link,
        "arms": [{"name": f"a{i}", "codec": "jpeg", "policy": p}
                 for i, p in enumerate(policies or KERNEL_POLICIES)],
    })


def _lines(result: Any) -> list[str]:
    return [json.dumps(r.to_dict()) for r in result.records]


def assert_kernel_agrees(monkeypatch: pytest.MonkeyPatch, sc: Scenario,
                         payload: int | None) -> int:
    trace = build_trace(sc, ROOT / "scenarios" / "x.yaml").scaled(sc.link.share)
    frames = 0
    for arm in sc.arms:
        info = NetworkOnlyEndpoints(sc, payload).start_arm(arm.label, arm.codec, {}, False)
        assert compiled.eligible(FastArmSimulation(sc, arm, trace, payload), info), arm.label
        monkeypatch.setenv("DIFFSTREAM_KERNEL", "0")
        ref = FastArmSimulation(sc, arm, trace, payload).run()
        monkeypatch.setenv("DIFFSTREAM_KERNEL", "1")
        fast = FastArmSimulation(sc, arm, trace, payload).run()
        a, b = _lines(ref), _lines(fast)
        assert len(a) == len(b) == sc.frames_per_arm
        for seq, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:
                dx, dy = json.loads(x), json.loads(y)
                diff = {k: (dx[k], dy[k]) for k in dx if dx[k] != dy[k]}
                pytest.fail(f"arm {arm.label} frame {seq}: python vs kernel {diff}")
        assert fast.offered_bytes == ref.offered_bytes
        assert fast.end_s == ref.end_s
        frames += len(a)
    return frames


@pytest.mark.parametrize("queue", list(QUEUES))
@pytest.mark.parametrize("loss", list(LOSSES))
@pytest.mark.parametrize("trace", list(TRACES))
def test_grid_agrees(monkeypatch: pytest.MonkeyPatch, trace: str, loss: str,
                     queue: str) -> None:
    for mode in ("interactive", "playback"):
        sc = _scenario(TRACES[trace], LOSSES[loss], QUEUES[queue], mode=mode, duration=2.5)
        for payload in (None, 1200):
            assert assert_kernel_agrees(monkeypatch, sc, payload) > 0


@pytest.mark.parametrize("trace", list(TRACES))
def test_playback_defaults_and_short_runs_agree(monkeypatch: pytest.MonkeyPatch,
                                                trace: str) -> None:
    """The default playback mode (deep buffer, 1 s startup), and runs shorter than the
    startup (the playout's flush decides every slot)."""
    sc = _scenario(TRACES[trace], LOSSES["bernoulli"], QUEUES["bytes"], duration=8.0,
                   mode="playback-deep")
    assert assert_kernel_agrees(monkeypatch, sc, None) > 0
    sc = _scenario(TRACES[trace], None, None, duration=0.3, mode="playback-deep")
    assert assert_kernel_agrees(monkeypatch, sc, 800) > 0


def test_long_run_compaction_and_chunks_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    """60 s of LTE with 4 kB frames: the link's queue lists are compacted (4096 departed
    packets) and, with small chunks, the run crosses many chunk boundaries and loss-coin
    refills; an overloaded link (share 0.05) keeps reports pending across chunks."""
    monkeypatch.setattr(compiled, "CHUNK_FRAMES", 97)
    sc = _scenario(TRACES["lte"], LOSSES["bernoulli"], None, duration=60.0,
                   policies=[{"kind": "rate"}, {"kind": "mpc"}, {"kind": "deadline"}])
    assert assert_kernel_agrees(monkeypatch, sc, 4000) == 3 * 1800
    sc = _scenario(TRACES["lte"], LOSSES["bursty"], QUEUES["bytes"], duration=20.0,
                   policies=[{"kind": "fixed", "bpp": 1.0}, {"kind": "mpc"}, {"kind": "oracle"}],
                   share=0.05)
    assert assert_kernel_agrees(monkeypatch, sc, None) == 3 * 600
    sc = _scenario(TRACES["lte"], LOSSES["bernoulli"], None, duration=40.0, mode="playback",
                   policies=[{"kind": "rate"}, {"kind": "mpc"}, {"kind": "deadline"}])
    assert assert_kernel_agrees(monkeypatch, sc, 4000) == 3 * 1200


def test_binary_exact_ties_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reports landing exactly on capture times (``tie_scenario``): SimPy's event order
    decides which reports a frame's policy has seen."""
    sc = tie_scenario("rate", "mpc", "deadline")
    assert assert_kernel_agrees(monkeypatch, sc, 1000) > 0


@pytest.mark.parametrize("change", [
    {"mode": {"kind": "playback", "startup_s": 400.0}},
    {"policy": {"kind": "deadline", "predictor": {"kind": "kalman"}}},
    {"policy": {"kind": "rate", "predictor": {"kind": "ewma"}}},
    {"policy": {"kind": "rate", "predictor": {"kind": "harmonic", "robust": True}}},
    {"policy": {"kind": "mpc", "predictor": {"kind": "harmonic", "robust": False}}},
    {"policy": {"kind": "mpc", "horizon": 8, "levels_bpp": [0.1, 0.5]}},
], ids=["playback-long-startup", "deadline-kalman", "ewma", "robust-rate", "plain-mpc", "mpc-h8"])
def test_what_the_kernel_does_not_cover_stays_on_the_python_path(change: dict) -> None:
    data = _scenario(TRACES["constant"], None, None, policies=[{"kind": "rate"}]).model_dump()
    if "mode" in change:
        data["mode"] = change["mode"]
    else:
        data["arms"][0]["policy"] = change["policy"]
    sc = Scenario.model_validate(data)
    trace = build_trace(sc, ROOT / "scenarios" / "x.yaml").scaled(sc.link.share)
    arm = sc.arms[0]
    info = NetworkOnlyEndpoints(sc, None).start_arm(arm.label, arm.codec, {}, False)
    assert not compiled.eligible(FastArmSimulation(sc, arm, trace, None), info)
    assert len(FastArmSimulation(sc, arm, trace, None).run().records) == sc.frames_per_arm


def test_kernel_off_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    sc = _scenario(TRACES["constant"], None, None, policies=[{"kind": "rate"}])
    trace = build_trace(sc, ROOT / "scenarios" / "x.yaml").scaled(sc.link.share)
    info = NetworkOnlyEndpoints(sc, None).start_arm(sc.arms[0].label, "jpeg", {}, False)
    assert compiled.eligible(FastArmSimulation(sc, sc.arms[0], trace, None), info)
    monkeypatch.setenv("DIFFSTREAM_KERNEL", "0")
    assert not compiled.eligible(FastArmSimulation(sc, sc.arms[0], trace, None), info)


def test_crc_width_classes_match_zlib() -> None:
    """The header carries the zero payload's CRC-32; the kernel's table of its msgpack
    width class must be zlib's value's."""
    classes = compiled.kernel().crc32_zero_classes(5000)
    for n in list(range(0, 300)) + list(range(300, 5001, 37)):
        v = zlib.crc32(bytes(n))
        assert classes[n] == (0 if v < 128 else 1 if v < 256 else 2 if v < 65536 else 3), n


_IMPORTS = """
import sys
from pathlib import Path
from diffstream.scenario.build import build_trace
from diffstream.scenario.schema import Scenario
from diffstream.sim.fastpath import FastArmSimulation
sc = Scenario.model_validate({{"name": "lazy", "seed": 1, "duration_s": 1.0,
    "frame": {{"width": 64, "height": 64, "fps": 30}},
    "trace": {{"kind": "constant", "mbps": 2.0, "duration_s": 10}},
    "arms": [{{"codec": "jpeg", "policy": {{"kind": "{policy}"}}}}]}})
trace = build_trace(sc, Path("x.yaml")).scaled(sc.link.share)
FastArmSimulation(sc, sc.arms[0], trace, None).run()
print("numba" in sys.modules)
"""


@pytest.mark.parametrize(("policy", "imported"), [("gcc", "False"), ("rate", "True")])
def test_numba_is_imported_only_for_an_arm_the_kernel_may_run(policy: str,
                                                              imported: str) -> None:
    """A process that runs no kernel-covered arm (here gcc on the Python fast path) never
    imports numba or the kernel; the first covered arm does."""
    out = subprocess.run([sys.executable, "-c", _IMPORTS.format(policy=policy)],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip().splitlines()[-1] == imported, out.stderr[-2000:]
