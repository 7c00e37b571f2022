"""The generative codecs live: GIC, DiffC (prefixes cut by the deadline) and BADiff on
generated content, each streamed by ``python -m diffstream send`` to ``recv`` on loopback.

Each test checks that frames were coded, delivered and shown, and that both sides wrote the
simulator's outputs (``frames.jsonl`` with exactly ``FrameRecord``'s fields, read back with
``read_frames_jsonl``; ``summary.csv`` with ``ArmSummary``'s columns) and agree. Start-up
is a few seconds per process (torch and the models load); DiffC and BADiff also pay for
real diffusion on the CPU (seconds per frame), so their streams run at 0.5-1 fps.
"""

from __future__ import annotations

import csv
import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import yaml

from diffstream.live.check import compare_dirs
from diffstream.live.schema import load_live_scenario
from diffstream.live.shaping import TraceShaper, streams_progressive
from diffstream.output.report import read_frames_jsonl
from diffstream.pipeline.records import ArmSummary, FrameRecord
from tests.integration.live.test_live_loopback import free_port, live_scenario
from tests.support.live_harness import Proc, stream_dirs


def scenario(tmp: Path, *, size: int, fps: float, duration_s: float, latency_ms: int,
             arm: dict[str, Any], content: dict[str, Any] | None = None,
             link: dict[str, Any] | None = None, trace: dict[str, Any] | None = None,
             shaping: bool = False) -> Path:
    data: dict[str, Any] = {
        "name": "livecodec", "seed": 1, "duration_s": duration_s,
        "frame": {"width": size, "height": size, "fps": fps},
        "content": content or {"source": "skimage", "shot_frames": 10},
        "mode": {"kind": "interactive", "target_latency_ms": latency_ms},
        "trace": trace or {"kind": "constant", "mbps": 4.0, "duration_s": 60},
        "link": link or {"share": 0.1, "delay_ms": 20},
        "arms": [arm],
        "output": {"dir": "out", "plots": False},
        # codec work blocks the sender's loop for up to seconds: generous timeouts
        "live": {"heartbeat_ms": 300, "report_timeout_s": 30.0, "peer_timeout_s": 10.0,
                 "shaping": shaping},
    }
    path = tmp / "live.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def stream(tmp: Path, path: Path, timeout_s: float = 150.0, *,
           lossy: bool = False) -> list[FrameRecord]:
    """Run sender and receiver to the end; check the outputs; the sender's records (no
    frame lost, unless the scenario's link is ``lossy``)."""
    ep = f"tcp://127.0.0.1:{free_port()}"
    send = Proc(["send", "--scenario", str(path), "--bind", ep, "--out", "out/s", "--wait",
                 "120", "--no-dashboard"], tmp / "send.log", cwd=tmp)
    recv = Proc(["recv", "--connect", ep, "--out", "out/r", "--wait", "120",
                 "--no-dashboard"], tmp / "recv.log", cwd=tmp)
    try:
        assert recv.wait(timeout_s) == 0, recv.output()[-3000:]
        assert send.wait(60) == 0, send.output()[-3000:]
    finally:
        send.close()
        recv.close()
    sdir, rdir = stream_dirs(tmp / "out/s")[0], stream_dirs(tmp / "out/r")[0]
    record_fields = [f.name for f in fields(FrameRecord)]
    summary_fields = [f.name for f in fields(ArmSummary)]
    for d in (sdir, rdir):
        lines = (d / "frames.jsonl").read_text().splitlines()
        assert lines and all(list(json.loads(line)) == record_fields for line in lines)
        with (d / "summary.csv").open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert len(rows) == 1 and list(rows[0]) == summary_fields
        assert int(rows[0]["frames"]) == len(lines)
    agreement = compare_dirs(sdir, rdir)
    assert agreement.ok, agreement.describe()
    records = read_frames_jsonl(sdir / "frames.jsonl")
    assert [r.seq for r in records] == list(range(len(records)))
    if not lossy:
        assert not any(r.error.startswith("lost") for r in records), [r.error for r in records]
    return records


def shown(records: list[FrameRecord]) -> list[FrameRecord]:
    good = [r for r in records if r.shown]
    assert all(r.decoded and not r.skipped and r.psnr_db is not None and r.latency_s is not None
               for r in good)
    return good


def test_shaper_cuts_a_progressive_frame_at_its_deadline(tmp_path: Path) -> None:
    """A 1500-byte frame in 576-byte packets (536 + 536 + 428 bytes of frame) on 400 kbit/s
    with 20 ms of delay arrives at ~32, ~43 and ~52 ms. With ``cut_s`` at 40 ms only the
    first packet is in time: a progressive frame is released then, holding 536 bytes."""
    sc, spath = load_live_scenario(live_scenario(tmp_path))
    sc = sc.model_copy(update={"link": sc.link.model_copy(update={"mtu": 576})})
    assert not streams_progressive(sc)  # the jpeg arm

    def admit(cut_s: float | None, progressive: bool = True) -> Any:
        return TraceShaper(sc, spath, progressive=progressive).admit(0.0, 1500, cut_s)

    whole = admit(None)
    assert (whole.prefix_len, whole.cut) == (1500, False) and whole.release_s > 0.045
    cut = admit(0.040)
    assert (cut.prefix_len, cut.cut) == (536, True) and 0.025 < cut.release_s <= 0.040
    assert admit(0.047).prefix_len == 1072  # two packets in time
    assert admit(0.040, progressive=False) == whole  # other codecs: whole, and late
    assert admit(0.010) == whole  # nothing in time: whole, late, as before
    assert admit(1.0) == whole  # all in time


def test_gic_streams_live(tmp_path: Path) -> None:
    """GIC (rate policy) at 32x32, 5 fps, 2 s: frames are coded at GIC's rates and shown,
    and quality follows the budget. With bitstream format 2 (mean-shifted, floor ~14 bytes
    at 32x32) the 256-bit startup budget already codes (format 1 skipped it and probed up to
    512 bits); once throughput samples arrive the rate policy raises the budget."""
    path = scenario(tmp_path, size=32, fps=5, duration_s=2.0, latency_ms=1000,
                    arm={"codec": "gic", "policy": {"kind": "rate"}})
    records = stream(tmp_path, path)
    assert len(records) == 10
    ok = shown(records)
    assert len(ok) >= 4, [(r.budget_bits, r.skipped, r.shown, r.latency_s) for r in records]
    assert all(r.codec == "gic" and r.codec_steps >= 1 for r in ok)
    assert min(r.psnr_db for r in ok) > 12.0  # type: ignore[type-var]
    low, high = min(r.budget_bits for r in ok), max(r.budget_bits for r in ok)
    assert high >= 4 * low, [r.budget_bits for r in ok]  # the policy moved the budget up
    q_low = [r.psnr_db for r in ok if r.budget_bits == low]
    q_high = [r.psnr_db for r in ok if r.budget_bits == high]
    assert min(q_high) > max(q_low) + 3.0, (q_low, q_high)  # type: ignore[operator]


@pytest.mark.slow
def test_badiff_generated_content_rate_policy_starts_above_its_floor(tmp_path: Path) -> None:
    """BADiff on generated content at 32x32 with the rate policy (issue 19, item 5): the
    0.25 bpp startup budget (256 bits) is below BADiff's floor (~360 bits), which used to
    skip every frame. Now the first budget is the floor, a skipped floor-sized frame
    doubles the next one, and frames are generated, delivered and shown; the receiver
    scores them against the requests' reference samples, computed before the stream.
    Pinned to the own coder: its floor is above the startup budget (LIC's, the default
    coder's, is 176 bits, below it).

    With the stop policy refitted on the model's own runs (issue 16) these two requests'
    images cost the own coder more than 720 bits at its coarsest step, above the doubled
    floor, so they skip with that reason; whether frames are then shown depends on the
    images, not on the policy, and is not asserted. What the test pins: the floor start,
    the doubling, and the sampler's work on every frame."""
    path = scenario(tmp_path, size=32, fps=1, duration_s=4.0, latency_ms=6000,
                    arm={"codec": "badiff", "codec_options": {"coder": "own"},
                         "policy": {"kind": "rate"}},
                    content={"source": "generated", "requests": 2})
    records = stream(tmp_path, path)
    assert len(records) == 4
    assert records[0].budget_bits > 256  # started at the floor, not at 0.25 bpp
    first, second = records[0], records[1]
    if first.skipped:  # a skipped floor-sized frame doubles the next budget
        assert second.budget_bits == 2 * first.budget_bits, [r.budget_bits for r in records]
    for r in records:  # generated (U-Net calls of the sampler); a skip names its reason
        assert r.codec_steps > 1, (r.budget_bits, r.skip_reason)
        assert not r.skipped or "below the coarsest step's payload" in r.skip_reason
    ok = shown(records)
    assert all(r.psnr_db is not None for r in ok)  # scored against the reference


DIFFC_CUT_AT_S = 9.5
"""Where the deadline cut should fall, seconds after capture (``target latency - 2 x encode``):
the middle of the window that the 15 s latency gives for encodes of 1-4.5 s (15 - 2 x 2.75).
Moving the first run's latency to 6 s (no cut) made the second run cut frame 2 and show it
at this machine's 1.9 s encodes (checked once)."""


def _diffc_cut_stream(tmp: Path, latency_ms: int) -> list[FrameRecord]:
    tmp.mkdir()
    path = scenario(tmp, size=64, fps=0.5, duration_s=12.0, latency_ms=latency_ms,
                    arm={"codec": "diffc", "policy": {"kind": "fixed", "bpp": 2.8}},
                    link={"share": 0.0032, "delay_ms": 20, "mtu": 576},
                    trace={"kind": "constant", "mbps": 1.0, "duration_s": 120}, shaping=True)
    return stream(tmp, path, timeout_s=240.0)


@pytest.mark.slow
def test_diffc_prefix_cut_by_the_deadline_is_shown(tmp_path: Path) -> None:
    """DiffC at 64x64 (at 32x32 a DiffC frame fits one 576-byte packet, so no prefix can be
    cut) with shaping: frames of three 576-byte packets (~1.5 kB) on a 3.2 kbit/s
    link, one frame every 2 s. A frame takes ~4 s on the link and its packets arrive over
    ~2.6 s, so frames queue and each arrives ~2 s later than the one before: the cut time
    (deadline - decode and encode allowances, ~15 s - 2 x encode time) falls among some
    frame's packets for encodes of ~1-4.5 s. Frames before it arrive whole, the shaper
    releases that frame's in-time prefix, and the receiver shows it decoded from the steps
    that arrived (``partial``, ``prefix_step`` < 25); later frames are late.

    The window depends on this machine's encode time. When no frame was cut, the stream
    is run once more with the latency moved so the cut falls ``DIFFC_CUT_AT_S`` after
    capture at the encode time the first run measured (a machine 50 % slower than usual
    encodes in ~6 s: the cut then fell before any packet arrived)."""
    records = _diffc_cut_stream(tmp_path / "run0", 15000)
    if not any(r.partial for r in records):
        encode_s = sorted(r.encode_ms for r in records)[len(records) // 2] / 1000.0
        latency_ms = int(1000 * (DIFFC_CUT_AT_S + 2 * encode_s))
        records = _diffc_cut_stream(tmp_path / "run1", latency_ms)
    assert len(records) == 6
    # 2.8 bpp: the steps that fit 1.4 kB (image chunking's frames are larger per step
    # than the table plan's were), three packets (four for the first: the stream identity)
    assert all(r.codec_steps >= 15 and r.packets in (3, 4) for r in records), [
        (r.codec_steps, r.packets) for r in records]
    cut = [r for r in records if r.partial]
    assert cut, [(r.seq, r.encode_ms, r.delivered_bytes, r.decoded, r.shown) for r in records]
    assert all(r.decoded and not r.complete and 0 < r.prefix_step < r.codec_steps  # type: ignore[operator]
               for r in cut)
    assert any(r.shown for r in cut), [(r.seq, r.latency_s, r.decode_ms) for r in cut]


def test_clairvoyant_policy_streams_live_under_shaping_with_loss(tmp_path: Path) -> None:
    """A shaped live stream gives ``optimal`` the emulated link's future, loss model
    included (``TraceShaper.delivery_prob``); the stream runs to the end, both logs agree,
    and the DP codes frames."""
    path = scenario(tmp_path, size=32, fps=10, duration_s=3.0, latency_ms=300,
                    arm={"codec": "jpeg", "policy": {"kind": "optimal"}},
                    link={"share": 0.1, "delay_ms": 20,
                          "loss": {"kind": "gilbert_elliott", "p_good_to_bad": 0.005,
                                   "p_bad_to_good": 0.3}},
                    shaping=True)
    sc, spath = load_live_scenario(path)
    prob = TraceShaper(sc, spath).delivery_prob
    assert prob is not None and 0.9 < prob(3000) < prob(1000) < 1.0
    records = stream(tmp_path, path, 120.0, lossy=True)
    assert len(records) == 30 and sum(r.budget_bits > 0 for r in records) >= 10
