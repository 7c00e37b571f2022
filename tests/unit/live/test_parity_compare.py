"""The sim-vs-live comparison (``tests/support/parity.py``) on synthetic frame logs."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from diffstream.pipeline.records import FrameRecord
from tests.support.parity import Tolerance, compare, rel_diff

STRICT = Tolerance(budget_within=0.05, budget_agree_min=0.9, median_budget_rel_max=0.05,
                   mean_budget_rel_max=0.05, fate_agree_min=0.9, delivered_diff_max=0.05)


def record(seq: int, **over: Any) -> FrameRecord:
    capture = seq * 0.1
    data: dict[str, Any] = dict(
        arm="jpeg-rate", seq=seq, codec="jpeg", policy="rate", capture_s=capture,
        send_s=capture + 0.001, deadline_s=capture + 0.3, budget_bits=10_000 + 10 * seq,
        payload_bytes=1200, header_bytes=24, wire_bytes=1300, packets=1, bpp=0.6,
        skipped=False, skip_reason="", codec_steps=1, encode_ms=0.4, encode_charged_s=0.0004,
        throughput_est_bps=200e3 + 1e3 * seq, capacity_bps=200e3, queue_bytes=0.0,
        packets_dropped=0, packets_lost=0, first_arrival_s=capture + 0.08,
        last_arrival_s=capture + 0.09, delivered_bytes=1300, complete=True, decoded=True,
        partial=False, prefix_step=None, decode_ms=0.2, decode_charged_s=0.0002,
        decode_done_s=capture + 0.091, shown=True, display_s=capture + 0.091,
        latency_s=0.091, deadline_met=True, stall=False, stall_s=0.0, psnr_db=30.0,
        ms_ssim=None, ssim=None, ssim_db=None, error="",
    )
    data.update(over)
    return FrameRecord(**data)


def late(r: FrameRecord) -> FrameRecord:
    t = r.capture_s + 0.5
    return replace(r, first_arrival_s=t, last_arrival_s=t, shown=False, display_s=None,
                   latency_s=None, deadline_met=False, stall=True)


SIM = [record(k) for k in range(40)]


def test_identical_logs_agree_everywhere() -> None:
    p = compare(SIM, SIM)
    assert p.n == 40 and p.missing == 0
    assert p.budget_agree(0.0) == 1.0 and p.fate_agree == 1.0
    assert p.mean_budget_rel == 0.0 and p.capacity_rel_max == 0.0
    assert len(p.matched_budget_rel) == 40 and p.matched_agree(0.0) == 1.0
    assert STRICT.failures(p) == []


def test_a_budget_drift_is_named_with_its_size() -> None:
    live = [replace(r, budget_bits=int(r.budget_bits * 0.8)) for r in SIM]
    p = compare(SIM, live)
    assert p.budget_agree(0.1) == 0.0
    assert p.median_budget_rel == pytest.approx(0.2, abs=1e-3)
    failures = " | ".join(STRICT.failures(p))
    assert "budgets within 5% for 0% of frames" in failures
    assert "mean budget sim" in failures and "20.0%" in failures
    # the estimates were the same: the policy decided differently on the same input
    assert "decides differently" in failures


def test_the_decision_check_needs_matching_estimates_and_enough_frames() -> None:
    live = [replace(r, budget_bits=int(r.budget_bits * 0.8),
                    throughput_est_bps=r.throughput_est_bps * 0.8) for r in SIM]
    p = compare(SIM, live)
    assert p.matched_budget_rel == ()  # no frame had the same estimate: nothing to judge
    assert not any("decides differently" in f for f in STRICT.failures(p))
    few = [replace(r, throughput_est_bps=None) if r.seq >= 5 else r for r in live]
    few = [replace(r, throughput_est_bps=SIM[r.seq].throughput_est_bps) if r.seq < 5 else r
           for r in few]
    assert len(compare(SIM, few).matched_budget_rel) == 5 < STRICT.matched_min_frames
    assert not any("decides differently" in f for f in STRICT.failures(compare(SIM, few)))


def test_fates_late_and_lost_frames() -> None:
    live = [late(r) if r.seq % 4 == 0 else r for r in SIM]
    live[1] = replace(live[1], first_arrival_s=None, last_arrival_s=None, shown=False,
                      decoded=False, display_s=None, latency_s=None, delivered_bytes=0)
    p = compare(SIM, live)
    assert p.fates_live.count("late") == 10 and p.fates_live.count("lost") == 1
    assert p.fate_agree == pytest.approx(29 / 40)
    assert p.delivered_sim == 1.0 and p.delivered_live == pytest.approx(29 / 40)
    failures = " | ".join(STRICT.failures(p))
    assert "fates agree for 72% of frames < 90%" in failures
    assert "delivered sim 100% vs live 72%" in failures


def test_missing_frames_and_a_misaligned_trace_fail() -> None:
    slow = [replace(r, capacity_bps=60e3 if 10 <= r.seq < 30 else 200e3) for r in SIM]
    shifted = [replace(r, capacity_bps=60e3 if 15 <= r.seq < 35 else 200e3) for r in SIM]
    assert STRICT.failures(compare(slow, slow)) == []
    failures = " | ".join(STRICT.failures(compare(slow, shifted[:-1])))
    assert "1 seqs are in one log only" in failures
    assert "the trace is not aligned" in failures


def test_rel_diff_is_symmetric_and_zero_for_two_skips() -> None:
    assert rel_diff(0, 0) == 0.0
    assert rel_diff(80, 100) == rel_diff(100, 80) == pytest.approx(0.2)
    assert rel_diff(0, 5000) == 1.0
