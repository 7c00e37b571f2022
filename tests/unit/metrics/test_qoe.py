"""QoE and freeze accounting against hand-computed values."""

from __future__ import annotations

import math
from typing import Any

import pytest

from diffstream.metrics.qoe import (
    QoEWeights,
    qoe_score,
    ssim_to_db,
    summarise_arm,
    webrtc_freezes,
)
from diffstream.pipeline.records import FrameRecord


def make_record(seq: int, **kw: Any) -> FrameRecord:
    """A shown, on-time 10 fps frame with 100 ms latency; override any field."""
    capture = seq * 0.1
    base: dict[str, Any] = dict(
        arm="a",
        seq=seq,
        codec="c",
        policy="p",
        capture_s=capture,
        send_s=capture,
        deadline_s=capture + 0.2,
        budget_bits=8000,
        payload_bytes=1000,
        header_bytes=20,
        wire_bytes=1100,
        packets=1,
        bpp=0.5,
        skipped=False,
        skip_reason="",
        codec_steps=1,
        encode_ms=1.0,
        encode_charged_s=0.01,
        throughput_est_bps=1e6,
        capacity_bps=2e6,
        queue_bytes=0.0,
        packets_dropped=0,
        packets_lost=0,
        first_arrival_s=capture + 0.05,
        last_arrival_s=capture + 0.05,
        delivered_bytes=1100,
        complete=True,
        decoded=True,
        partial=False,
        prefix_step=None,
        decode_ms=1.0,
        decode_charged_s=0.01,
        decode_done_s=capture + 0.1,
        shown=True,
        display_s=capture + 0.2,
        latency_s=0.2,
        deadline_met=True,
        stall=False,
        stall_s=0.0,
        psnr_db=30.0,
        ms_ssim=0.95,
        ssim=0.9,
        ssim_db=10.0,
        error="",
    )
    base.update(kw)
    return FrameRecord(**base)


# ---------------------------------------------------------------- webrtc_freezes


def test_regular_stream_has_no_freeze() -> None:
    times = [0.1 * k for k in range(50)]
    assert webrtc_freezes(times, 0.1, 0.0, 5.0) == []


def test_500ms_gap_after_30_frames_is_one_freeze() -> None:
    times = [0.1 * k for k in range(30)] + [2.9 + 0.5 + 0.1 * k for k in range(20)]
    out = webrtc_freezes(times, 0.1, 0.0, times[-1] + 0.1)
    assert len(out) == 1
    start, dur = out[0]
    assert start == pytest.approx(2.9)
    assert dur == pytest.approx(0.5)


@pytest.mark.parametrize(("gap", "frozen"), [(0.25, False), (0.29, False), (0.35, True)])
def test_threshold_is_max_of_3x_and_plus_150ms(gap: float, frozen: bool) -> None:
    # avg 100 ms: threshold = max(300, 250) ms, so 250/290 ms pass and 350 ms freezes.
    times = [0.1 * k for k in range(10)]
    times += [times[-1] + gap + 0.1 * k for k in range(10)]
    out = webrtc_freezes(times, 0.1, 0.0, times[-1] + 0.1)
    assert (len(out) == 1) is frozen


def test_plus_150ms_dominates_at_high_frame_rate() -> None:
    # avg 20 ms (50 fps): threshold = max(60, 170) ms; 100 ms passes, 200 ms freezes.
    base = [0.02 * k for k in range(40)]
    ok = base + [base[-1] + 0.1]
    bad = base + [base[-1] + 0.2]
    assert webrtc_freezes(ok, 0.02, 0.0, ok[-1]) == []
    assert len(webrtc_freezes(bad, 0.02, 0.0, bad[-1])) == 1


def test_trailing_silence_counts() -> None:
    times = [0.1 * k for k in range(20)]  # last display at 1.9
    out = webrtc_freezes(times, 0.1, 0.0, 3.0)
    assert out == [(pytest.approx(1.9), pytest.approx(1.1))]


def test_lead_in_and_nothing_shown() -> None:
    assert webrtc_freezes([], 0.1, 1.0, 4.0) == [(1.0, 3.0)]
    out = webrtc_freezes([0.5 + 0.1 * k for k in range(10)], 0.1, 0.0, 1.5)
    assert out == [(0.0, pytest.approx(0.5))]


def test_freeze_interval_enters_average_window() -> None:
    # A 1 s gap raises the mean of the window (1 s + 0.1 s)/2 = 0.55 s; a 0.9 s gap right
    # after is below 3 * 0.55 s and is not a second freeze (libwebrtc behaviour).
    times = [0.0, 0.1, 1.1, 2.0]
    out = webrtc_freezes(times, 0.1, 0.0, 2.0)
    assert [round(d, 6) for _, d in out] == [1.0]


# ---------------------------------------------------------------- qoe_score


def test_qoe_score_hand_computed() -> None:
    w = QoEWeights(switch_weight=2.0, stall_weight=50.0)
    q = [30.0, 34.0, 31.0]
    # mean 95/3; switches |4|,|3| -> 3.5; stall 0.1*50 = 5
    assert qoe_score(q, 0.1, w) == pytest.approx(95 / 3 - 2.0 * 3.5 - 5.0)
    assert qoe_score([], 0.0, w) == 0.0
    assert qoe_score([20.0], 0.5, w) == pytest.approx(20.0 - 25.0)


def test_weights_are_frozen_and_strict() -> None:
    w = QoEWeights()
    with pytest.raises(Exception):  # noqa: B017 - pydantic's ValidationError
        QoEWeights(bogus=1)  # type: ignore[call-arg]
    with pytest.raises(Exception):  # noqa: B017
        w.stall_weight = 3.0  # type: ignore[misc]


# ---------------------------------------------------------------- summarise_arm


def _interactive_arm() -> list[FrameRecord]:
    """10 frames at 10 fps, L = 200 ms; frames 4..7 lost (viewer keeps frame 3)."""
    recs = []
    psnr = [30.0, 32.0, 32.0, 31.0, 31.0, 31.0, 31.0, 31.0, 33.0, 33.0]
    lat = [0.10, 0.12, 0.14, 0.16, None, None, None, None, 0.18, 0.20]
    for k in range(10):
        c = 0.1 * k
        if lat[k] is None:
            recs.append(
                make_record(
                    k,
                    shown=False,
                    display_s=None,
                    latency_s=None,
                    deadline_met=False,
                    stall=True,
                    delivered_bytes=0,
                    complete=False,
                    decoded=False,
                    packets_lost=1,
                    psnr_db=psnr[k],
                    skipped=(k == 4),
                    bpp=0.0 if k == 4 else 0.5,
                )
            )
        else:
            recs.append(make_record(k, display_s=c + lat[k], latency_s=lat[k], psnr_db=psnr[k]))
    return recs


def test_summarise_interactive_hand_computed() -> None:
    recs = _interactive_arm()
    w = QoEWeights(switch_weight=1.0, stall_weight=50.0)
    s = summarise_arm(
        recs,
        mode="interactive",
        fps=10.0,
        pixels=4096,
        duration_s=1.0,
        weights=w,
        offered_bytes=11000.0,
    )
    assert s.frames == 10 and s.arm == "a" and s.codec == "c" and s.policy == "p"
    assert s.shown_pct == pytest.approx(60.0)
    assert s.deadline_miss_pct == pytest.approx(40.0)
    assert s.skipped == 1
    # displays: 0.1, 0.22, 0.34, 0.46, 0.98, 1.1; window [0.2, 1.2].
    # lead-in -0.1 (no freeze); 0.46 -> 0.98 = 0.52 s > max(3*0.12, 0.27): one freeze.
    assert s.freezes == 1
    assert s.freeze_s == pytest.approx(0.52)
    # latencies (ms) 100,120,140,160,180,200: p50 = 150, p95 = 195, p99 = 199
    assert s.latency_p50_ms == pytest.approx(150.0)
    assert s.latency_p95_ms == pytest.approx(195.0)
    assert s.latency_p99_ms == pytest.approx(199.0)
    assert s.mean_psnr_db == pytest.approx(315.0 / 10)
    assert s.mean_ms_ssim == pytest.approx(0.95)
    assert s.mean_ssim_db == pytest.approx(10.0)  # SSIM 0.9 -> 10 dB
    assert s.mean_bpp == pytest.approx(0.5)
    delivered = 6 * 1100
    assert s.delivered_kbps == pytest.approx(delivered * 8 / 1.0 / 1000)
    assert s.utilisation == pytest.approx(delivered / 11000.0)
    # switches: 2,0,1,0,0,0,0,2,0 -> 5/9
    assert s.qoe == pytest.approx(31.5 - 5 / 9 - 50.0 * 0.52)


def test_summarise_none_quality_is_zero_in_qoe_but_skipped_in_means() -> None:
    recs = [
        make_record(
            0, psnr_db=None, shown=False, display_s=None, latency_s=None, deadline_met=False
        ),
        make_record(1, psnr_db=40.0),
    ]
    w = QoEWeights(stall_weight=0.0)
    s = summarise_arm(
        recs, mode="interactive", fps=10.0, pixels=1, duration_s=0.2, weights=w, offered_bytes=0.0
    )
    assert s.mean_psnr_db == pytest.approx(40.0)
    assert s.qoe == pytest.approx(20.0 - 40.0)  # mean(0, 40) - |40 - 0|
    assert s.utilisation == 0.0
    assert s.latency_p50_ms == pytest.approx(200.0)


def test_summarise_ssim_db_metric() -> None:
    recs = [make_record(0, ssim_db=10.0), make_record(1, ssim_db=20.0)]
    s = summarise_arm(
        recs,
        mode="interactive",
        fps=10.0,
        pixels=1,
        duration_s=0.2,
        weights=QoEWeights(metric="ssim_db"),
        offered_bytes=1.0,
    )
    assert s.qoe == pytest.approx(15.0 - 10.0)


def test_summarise_playback_counts_rebuffers() -> None:
    recs = [make_record(k, deadline_s=None, deadline_met=True) for k in range(10)]
    recs[0] = make_record(0, deadline_s=None, stall_s=0.5, stall=True)
    recs[6] = make_record(6, deadline_s=None, stall_s=0.25, stall=True)
    recs[8] = make_record(8, deadline_s=None, shown=False, display_s=None, latency_s=None)
    w = QoEWeights(switch_weight=0.0, stall_weight=10.0)
    s = summarise_arm(
        recs, mode="playback", fps=10.0, pixels=1, duration_s=1.0, weights=w, offered_bytes=1.0
    )
    assert s.freezes == 2
    assert s.freeze_s == pytest.approx(0.75)
    assert s.deadline_miss_pct == pytest.approx(30.0)  # 2 stalled + 1 lost of 10
    assert s.qoe == pytest.approx(30.0 - 10.0 * 0.75)


def test_summarise_nothing_shown_is_fully_stalled() -> None:
    recs = [
        make_record(
            k, shown=False, display_s=None, latency_s=None, deadline_met=False, psnr_db=None
        )
        for k in range(5)
    ]
    s = summarise_arm(
        recs,
        mode="interactive",
        fps=10.0,
        pixels=1,
        duration_s=0.5,
        weights=QoEWeights(),
        offered_bytes=1.0,
    )
    assert s.freezes == 1 and s.freeze_s == pytest.approx(0.5)
    assert math.isnan(s.latency_p95_ms) and math.isnan(s.mean_psnr_db)
    assert s.qoe == pytest.approx(-50.0)
    with pytest.raises(ValueError):
        summarise_arm(
            [],
            mode="interactive",
            fps=10.0,
            pixels=1,
            duration_s=1.0,
            weights=QoEWeights(),
            offered_bytes=1.0,
        )


def test_ssim_to_db() -> None:
    assert ssim_to_db(0.99) == pytest.approx(20.0)
    assert math.isinf(ssim_to_db(1.0))
    assert math.isnan(ssim_to_db(math.nan))
