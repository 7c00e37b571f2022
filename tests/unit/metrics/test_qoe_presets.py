"""QoE presets, WebRTC freeze/pause counters and the qoe: schema, against hand computations."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from diffstream.errors import ConfigError
from diffstream.metrics.qoe import (
    display_window,
    slot_stalls_s,
    slot_trace,
    summarise_arm,
    webrtc_events,
    webrtc_freezes,
)
from diffstream.metrics.qoe_presets import (
    PENSIEVE_CHUNK_S,
    PRESETS,
    PUFFER_CHUNK_S,
    DiffstreamQoE,
    PensieveHdQoE,
    PensieveLinQoE,
    PensieveLogQoE,
    PufferQoE,
    SlotTrace,
    chunk_terms,
    pensieve_quality,
    score,
    score_all,
    slots_per_chunk,
)
from diffstream.pipeline.records import FrameRecord
from diffstream.scenario.load import load_scenario
from tests.conftest import tiny_scenario
from tests.unit.metrics.test_qoe import _interactive_arm, make_record

# ------------------------------------------------------------------ per-slot mode (chunk_s: null)
# 4 slots at 10 fps, 0.5 s of stall in a 0.4 s session.
TRACE = SlotTrace(
    psnr_db=[30.0, 34.0, None, 31.0],
    ssim=[0.9, None, 0.99, None],
    ssim_db=[10.0, 70.0, None, 12.0],
    rate_kbps=[750.0, 1200.0, 1200.0, 300.0],
    stall_s=0.5,
    duration_s=0.4,
    fps=10.0,
    slot_stall_s=[0.0, 0.5, 0.0, 0.0],
)
LIN, LOG, HD, PUF = (PensieveLinQoE(chunk_s=None), PensieveLogQoE(chunk_s=None),
                     PensieveHdQoE(chunk_s=None), PufferQoE(chunk_s=None))


def test_pensieve_lin_hand_computed() -> None:
    # q = 0.75, 1.2, 1.2, 0.3 Mbit/s: sum 3.45; switches 0.45 + 0 + 0.9 = 1.35; 4.3 * 0.5 = 2.15
    assert score(LIN, TRACE) == pytest.approx((3.45 - 2.15 - 1.35) / 4)
    assert score(PensieveLinQoE(rebuffer_penalty=0.0, smooth_penalty=2.0, chunk_s=None),
                 TRACE) == pytest.approx((3.45 - 0.0 - 2.0 * 1.35) / 4)


def test_pensieve_log_hand_computed() -> None:
    # q = ln 2.5, ln 4, ln 4, ln 1; switches (ln 4 - ln 2.5) + 0 + ln 4; 2.66 * 0.5 = 1.33
    q_sum = math.log(2.5) + 2 * math.log(4.0) + 0.0
    switches = (math.log(4.0) - math.log(2.5)) + 0.0 + math.log(4.0)
    assert score(LOG, TRACE) == pytest.approx((q_sum - 1.33 - switches) / 4)
    assert score(LOG, TRACE) == pytest.approx((2 * math.log(2.5) - 1.33) / 4)
    # R_min 750: q = 0, ln 1.6, ln 1.6, ln 0.4
    q_sum = 0.0 + 2 * math.log(1.6) + math.log(0.4)
    switches = math.log(1.6) + 0.0 + (math.log(1.6) - math.log(0.4))
    assert score(PensieveLogQoE(r_min_kbps=750.0, chunk_s=None), TRACE) == pytest.approx(
        (q_sum - 1.33 - switches) / 4)


def test_pensieve_hd_hand_computed() -> None:
    # rungs 750, 1200, 1200, 300 -> 2, 3, 3, 1: sum 9; switches 1 + 0 + 2 = 3; 8 * 0.5 = 4
    assert score(HD, TRACE) == pytest.approx((9.0 - 4.0 - 3.0) / 4)


def test_pensieve_hd_between_below_and_above_rungs() -> None:
    # 525 is half way 300 -> 750 (1 -> 2); 150 half way 0 -> 300 (0 -> 1); 1525 half way
    # 1200 -> 1850 (3 -> 12); 5000 above the top rung keeps 20; 0 -> 0.
    got = pensieve_quality([525.0, 150.0, 1525.0, 5000.0, 0.0], PensieveHdQoE(), 10.0)
    assert list(got) == pytest.approx([1.5, 0.5, 7.5, 20.0, 0.0])


def test_pensieve_log_floors_nothing_shown_at_one_byte_per_frame() -> None:
    # fps 10: one byte per frame = 80 bit/s = 0.08 kbit/s; 40 kbit/s is below R_min: negative
    got = pensieve_quality([0.0, 40.0, 300.0], PensieveLogQoE(), 10.0)
    assert list(got) == pytest.approx([math.log(0.08 / 300.0), math.log(40.0 / 300.0), 0.0])
    assert got[0] < got[1] < got[2]


def test_puffer_hand_computed() -> None:
    # Q = 10, 60 (70 clamped), 20 (SSIM 0.99; its dB is missing), 12: sum 102;
    # switches 50 + 40 + 8 = 98; 100 * 0.5 = 50
    assert score(PUF, TRACE) == pytest.approx((102.0 - 50.0 - 98.0) / 4)
    assert score(PufferQoE(rebuffer_penalty=20.0, chunk_s=None), TRACE) == pytest.approx(
        (102.0 - 10.0 - 98.0) / 4)
    none = SlotTrace([None], [None], [None], [0.0], 0.0, 0.1, 10.0, [0.0])
    assert score(PUF, none) == 0.0  # no score at all: Puffer's MIN_SSIM
    assert score(PufferQoE(), none) == 0.0  # the same as one (partial) chunk


def test_diffstream_hand_computed() -> None:
    # Q = 30, 34, 0, 31: mean 23.75; switches 4, 34, 31 -> 23; stalled 0.5 / 0.4 = 1.25
    assert score(DiffstreamQoE(), TRACE) == pytest.approx(23.75 - 23.0 - 50.0 * 1.25)
    # ssim_db metric: 10, 70, 0, 12 (no clamp): mean 23; switches 60, 70, 12 -> 142 / 3
    assert score(DiffstreamQoE(metric="ssim_db", stall_weight=0.0), TRACE) == pytest.approx(
        23.0 - 142.0 / 3)


# ------------------------------------------------------------------ chunks
# 7 slots at 10 fps; chunk_s 0.3 -> C = 3 slots: chunks {0, 1, 2}, {3, 4, 5} and a partial
# {6} of weight 1/3, so N = 2 + 1/3 = 7/3. S = 0.6 s, placed 0.1 | 0.2 | 0.3 per chunk.
CTRACE = SlotTrace(
    psnr_db=[30.0] * 7,
    ssim=[0.9, 0.99, None, 0.99, 0.99, 0.99, 1.0],
    ssim_db=[10.0, 20.0, 30.0, 20.0, 20.0, 20.0, None],
    rate_kbps=[300.0, 600.0, 900.0, 1200.0, 1200.0, 1200.0, 4300.0],
    stall_s=0.6,
    duration_s=0.7,
    fps=10.0,
    slot_stall_s=[0.0, 0.0, 0.1, 0.2, 0.0, 0.0, 0.3],
)
N_C = 7.0 / 3.0


def test_chunks_group_slots_and_weight_the_partial_last_one() -> None:
    terms = chunk_terms(PensieveLinQoE(chunk_s=0.3), CTRACE)
    assert list(terms.weight) == pytest.approx([1.0, 1.0, 1.0 / 3.0])
    # R_n = mean of the slots' bitrates: 1800 / 3, 3600 / 3, 4300 kbit/s
    assert list(terms.q) == pytest.approx([0.6, 1.2, 4.3])
    assert list(terms.stall_s) == pytest.approx([0.1, 0.2, 0.3])


def test_pensieve_lin_chunked_hand_computed() -> None:
    # q = 0.6, 1.2, 4.3 (weight 1/3): sum 0.6 + 1.2 + 4.3 / 3; switches 0.6 + 3.1 / 3;
    # stall 4.3 * 0.6 = 2.58
    want = (0.6 + 1.2 + 4.3 / 3 - 2.58 - (0.6 + 3.1 / 3)) / N_C
    assert score(PensieveLinQoE(chunk_s=0.3), CTRACE) == pytest.approx(want)
    assert want == pytest.approx(-0.42)  # (3.2333 - 2.58 - 1.6333) / 2.3333


def test_pensieve_log_chunked_hand_computed() -> None:
    # q = ln 2, ln 4, ln(4300 / 300); stall 2.66 * 0.6 = 1.596
    q0, q1, q2 = math.log(2.0), math.log(4.0), math.log(4300.0 / 300.0)
    want = (q0 + q1 + q2 / 3 - 1.596 - ((q1 - q0) + (q2 - q1) / 3)) / N_C
    assert score(PensieveLogQoE(chunk_s=0.3), CTRACE) == pytest.approx(want)


def test_pensieve_hd_chunked_hand_computed() -> None:
    # R_n 600 (2/3 of the way 300 -> 750: reward 1 + 2/3), 1200 (3), 4300 (20):
    # sum 5/3 + 3 + 20/3 = 34/3; switches 4/3 + 17/3 = 7; stall 8 * 0.6 = 4.8
    want = (34.0 / 3.0 - 4.8 - 7.0) / N_C
    assert score(PensieveHdQoE(chunk_s=0.3), CTRACE) == pytest.approx(want)
    assert want == pytest.approx(-0.2)


def test_puffer_chunked_hand_computed() -> None:
    # chunk 0: SSIM 0.9, 0.99 and 30 dB (index 0.999): mean 0.963 -> -10 log10(0.037)
    # = 14.318 dB (the mean of the dB values would be 20); chunk 1: 0.99 -> 20 dB;
    # chunk 2: SSIM 1 -> inf, clamped to 60 (weight 1/3). Stall 100 * 0.6 = 60.
    q0 = -10.0 * math.log10(1.0 - 0.963)
    assert q0 == pytest.approx(14.318, abs=1e-3)
    terms = chunk_terms(PufferQoE(chunk_s=0.3), CTRACE)
    assert list(terms.q) == pytest.approx([q0, 20.0, 60.0])
    want = (q0 + 20.0 + 60.0 / 3 - 60.0 - ((20.0 - q0) + 40.0 / 3)) / N_C
    assert score(PufferQoE(chunk_s=0.3), CTRACE) == pytest.approx(want)
    # a slot without any SSIM is index 0 in the mean: (0.99 + 0) / 2 -> 2.924 dB
    half = SlotTrace([None] * 2, [0.99, None], [None, None], [0.0] * 2, 0.0, 0.2, 10.0,
                     [0.0] * 2)
    assert chunk_terms(PufferQoE(chunk_s=0.2), half).q[0] == pytest.approx(
        -10.0 * math.log10(1.0 - 0.495))


def test_slots_per_chunk_rounds_to_whole_slots() -> None:
    assert slots_per_chunk(PENSIEVE_CHUNK_S, 10.0) == 40
    assert slots_per_chunk(PUFFER_CHUNK_S, 10.0) == 20  # 20.02 slots
    assert slots_per_chunk(PUFFER_CHUNK_S, 30000 / 1001) == 60  # Puffer's 60 frames
    assert slots_per_chunk(0.01, 10.0) == 1  # shorter than a slot: one slot
    assert slots_per_chunk(None, 10.0) == 1
    assert PensieveLinQoE().chunk_s == PensieveHdQoE().chunk_s == 4.0
    assert PufferQoE().chunk_s == 2.002


def test_score_all_uses_the_chosen_options_and_defaults_elsewhere() -> None:
    got = score_all(TRACE, PufferQoE(rebuffer_penalty=20.0, chunk_s=None))
    assert set(got) == set(PRESETS)
    assert got["puffer"] == pytest.approx((102.0 - 10.0 - 98.0) / 4)
    assert got["diffstream"] == pytest.approx(23.75 - 23.0 - 62.5)
    # pensieve-hd at its default 4 s chunks: the 4 slots are one chunk of weight 4 / 40;
    # R = 3450 / 4 = 862.5 kbit/s, a quarter of the way 750 -> 1200: reward 2.25
    assert got["pensieve-hd"] == pytest.approx((0.1 * 2.25 - 8.0 * 0.5) / 0.1)


def test_slot_trace_needs_stall_placed_on_the_slots() -> None:
    with pytest.raises(ValueError, match="sums to"):
        SlotTrace([1.0], [0.9], [10.0], [80.0], 0.5, 0.1, 10.0, [0.2])
    with pytest.raises(ValueError, match="entries"):
        SlotTrace([1.0], [0.9], [10.0], [80.0], 0.0, 0.1, 10.0, [0.0, 0.0])


# ------------------------------------------------------------------ WebRTC freezes and pauses
def test_pause_is_not_a_freeze_and_stays_out_of_the_window() -> None:
    times = [0.1 * k for k in range(10)]  # 0.0 .. 0.9
    times += [6.9 + 0.1 * k for k in range(6)]  # 6.9 .. 7.4 after a 6 s gap
    times += [7.9]  # 0.5 s gap
    freezes, pauses = webrtc_events(times, 0.1, 0.0, 8.0)
    assert pauses == [(pytest.approx(0.9), pytest.approx(6.0))]
    # window: nine 0.1 s and five 0.1 s intervals (the pause is not in it): 0.5 > 0.3
    assert freezes == [(pytest.approx(7.4), pytest.approx(0.5))]
    # without the pause rule the 6 s gap is a freeze and lifts the mean to
    # (14 * 0.1 + 6.0) / 15 = 0.493 s: 0.5 s < 3 * 0.493 is then no freeze
    assert webrtc_freezes(times, 0.1, 0.0, 8.0) == [(pytest.approx(0.9), pytest.approx(6.0))]


def test_boundary_gaps_follow_the_pause_rule() -> None:
    assert webrtc_events([], 0.1, 0.0, 6.0) == ([], [(0.0, 6.0)])
    assert webrtc_events([], 0.1, 0.0, 3.0) == ([(0.0, 3.0)], [])
    assert webrtc_events([], 0.1, 1.0, 1.2) == ([(1.0, pytest.approx(0.2))], [])
    # trailing 5.5 s of nothing after 10 regular frames is a pause; 5.0 s exactly is not
    times = [0.1 * k for k in range(10)]
    assert webrtc_events(times, 0.1, 0.0, 0.9 + 5.5) == ([], [(pytest.approx(0.9), 5.5)])
    freezes, pauses = webrtc_events(times, 0.1, 0.0, 5.9)
    assert pauses == [] and [d for _, d in freezes] == [pytest.approx(5.0)]


# ------------------------------------------------------------------ whole arms
def _rate_arm() -> list[FrameRecord]:
    """8 frames at 10 fps, L = 200 ms; 2..4 lost, 5 a quarter prefix of 4000 bytes."""
    payload = [1000, 2500, 0, 0, 0, 4000, 1500, 1500]
    recs = []
    for k in range(8):
        if 2 <= k <= 4:
            recs.append(make_record(k, shown=False, display_s=None, latency_s=None,
                                    deadline_met=False, stall=True, payload_bytes=payload[k],
                                    ssim_db=10.0))
        else:
            recs.append(make_record(k, payload_bytes=payload[k], ssim_db=10.0,
                                    partial=(k == 5), prefix_step=1 if k == 5 else None,
                                    codec_steps=4 if k == 5 else 1))
    return recs


def test_summary_maps_frames_to_pensieve_rates_hand_computed() -> None:
    recs = _rate_arm()
    s = summarise_arm(recs, mode="interactive", fps=10.0, pixels=4096, duration_s=0.8,
                      weights=PensieveLinQoE(chunk_s=None), offered_bytes=1.0)
    # displays 0.2, 0.3, 0.7, 0.8, 0.9 in [0.2, 1.0]: the 0.4 s gap is the one freeze
    assert (s.freezes, s.freeze_s) == (1, pytest.approx(0.4))
    assert (s.freeze_count, s.total_freezes_duration_s, s.pauses) == (1, pytest.approx(0.4), 0)
    assert s.rebuffer_ratio == pytest.approx(0.4 / 0.8)
    assert s.stalled_pct == pytest.approx(100.0 * 0.4 / 0.8)
    # per slot (chunk_s null): R kbit/s = payload bits * 10: 80, 200, then 200 while stale
    # (x3), 80 (1000 of 4000 bytes), 120, 120. lin: sum 1.2 Mbit/s, switches
    # 0.12 + 0.12 + 0.04 = 0.28, 4.3 * 0.4
    assert s.qoe_preset == "pensieve-lin"
    assert s.qoe == s.qoe_pensieve_lin == pytest.approx((1.2 - 1.72 - 0.28) / 8)
    trace = slot_trace(recs, mode="interactive", fps=10.0, duration_s=0.8)
    # hd: 80/300, 200/300 (x4), 80/300, 120/300 (x2) -> sum 1200/300 = 4;
    # switches (120 + 120 + 40)/300; 8 * 0.4 = 3.2
    assert score(HD, trace) == pytest.approx((4.0 - 3.2 - 280.0 / 300.0) / 8)
    q_sum = 2 * math.log(80 / 300) + 4 * math.log(200 / 300) + 2 * math.log(120 / 300)
    switches = 2 * math.log(2.5) + math.log(1.5)
    assert score(LOG, trace) == pytest.approx((q_sum - 2.66 * 0.4 - switches) / 8)
    # puffer: SSIM dB 10 everywhere: (80 - 100 * 0.4) / 8; diffstream: 30 - 50 * 0.4 / 0.8
    assert score(PUF, trace) == pytest.approx((80.0 - 40.0) / 8)
    assert s.qoe_diffstream == pytest.approx(30.0 - 50.0 * 0.5)
    # the other columns at their default chunks: 8 slots are one chunk of weight 8 / 40
    # (Pensieve, 4 s) or 8 / 20 (Puffer, 2.002 s); R = 1200 / 8 = 150 kbit/s
    assert s.qoe_pensieve_hd == pytest.approx((0.2 * 0.5 - 8.0 * 0.4) / 0.2)  # reward 0.5
    assert s.qoe_pensieve_log == pytest.approx(math.log(0.5) - 2.66 * 0.4 / 0.2)
    # SSIM index 0.9 everywhere -> 10 dB
    assert s.qoe_puffer == pytest.approx((0.4 * 10.0 - 100.0 * 0.4) / 0.4)


def _lost(k: int, **kw: Any) -> FrameRecord:
    return make_record(k, shown=False, display_s=None, latency_s=None, deadline_met=False,
                       stall=True, **kw)


def test_freeze_straddling_a_chunk_boundary_is_split_over_the_chunks() -> None:
    # 12 frames at 10 fps, L = 0.2: timeline [0.2, 1.4]. Frames 3..7 lost; frame 8 shown
    # 0.05 s late at 1.05: the freeze runs 0.4 -> 1.05 (0.65 s > max(3 * 0.1, 0.25)),
    # i.e. [0.2, 0.85) on the timeline: slots 2..7 get 0.1 s each, slot 8 0.05 s.
    recs = [_lost(k) if 3 <= k <= 7 else make_record(k) for k in range(12)]
    recs[8] = make_record(8, display_s=1.05, latency_s=0.25, deadline_met=False)
    stalls = slot_stalls_s(recs, mode="interactive", fps=10.0, duration_s=1.2)
    assert stalls == pytest.approx([0, 0, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.05, 0, 0, 0])
    trace = slot_trace(recs, mode="interactive", fps=10.0, duration_s=1.2)
    assert trace.stall_s == pytest.approx(0.65)
    # chunks of 0.4 s = 4 slots: 0.2 | 0.4 | 0.05, summing to S
    terms = chunk_terms(PensieveLinQoE(chunk_s=0.4), trace)
    assert list(terms.stall_s) == pytest.approx([0.2, 0.4, 0.05])
    assert float(terms.stall_s.sum()) == pytest.approx(trace.stall_s)


def test_freeze_past_the_session_end_counts_in_the_last_slot() -> None:
    # 4 frames, timeline [0.2, 0.6]; frame 2 lost, frame 3 shown at 0.9: the freeze
    # 0.3 -> 0.9 is [0.1, 0.7) on the timeline; slot 3 spans [0.3, 0.4) but takes the rest
    recs = [make_record(0), make_record(1), _lost(2),
            make_record(3, display_s=0.9, latency_s=0.6, deadline_met=False)]
    stalls = slot_stalls_s(recs, mode="interactive", fps=10.0, duration_s=0.4)
    assert stalls == pytest.approx([0.0, 0.1, 0.1, 0.4])


def test_playback_rebuffer_belongs_to_the_chunk_of_the_frame_it_delayed() -> None:
    # 10 frames, 0.5 s rebuffer before frame 4: chunks of 4 slots -> 0 | 0.5 | 0
    recs = [make_record(k, deadline_s=None, display_s=1.0 + 0.1 * k + (0.5 if k >= 4 else 0),
                        latency_s=None, stall_s=0.5 if k == 4 else 0.0, stall=k == 4)
            for k in range(10)]
    trace = slot_trace(recs, mode="playback", fps=10.0, duration_s=1.0)
    assert trace.slot_stall_s == [0.0] * 4 + [0.5] + [0.0] * 5
    terms = chunk_terms(PufferQoE(chunk_s=0.4), trace)
    assert list(terms.weight) == pytest.approx([1.0, 1.0, 0.5])  # 10 slots: 4, 4, 2
    assert list(terms.stall_s) == pytest.approx([0.0, 0.5, 0.0])


def test_frozen_high_bitrate_arm_scores_below_an_adaptive_one_on_every_preset() -> None:
    # 60 s at 10 fps, L = 0.2. Frozen: frames 0..199 at 4300 kbit/s (53750 bytes), then
    # nothing new: 40.1 s frozen (display 20.1 -> end 60.2), the stale frame of a slow scene
    # keeps SSIM 0.99 (20 dB) and 40 dB. Adaptive: every frame at 750 kbit/s (9375 bytes),
    # SSIM 0.95 (13.01 dB), 32 dB, never frozen.
    frozen = [make_record(k, payload_bytes=53750, ssim=0.99, ssim_db=20.0, psnr_db=40.0)
              if k < 200 else _lost(k, payload_bytes=0, ssim=0.99, ssim_db=20.0, psnr_db=40.0)
              for k in range(600)]
    adaptive = [make_record(k, payload_bytes=9375, ssim=0.95,
                            ssim_db=-10.0 * math.log10(0.05), psnr_db=32.0)
                for k in range(600)]

    def scores(recs: list[FrameRecord]) -> dict[str, float]:
        trace = slot_trace(recs, mode="interactive", fps=10.0, duration_s=60.0)
        return score_all(trace, DiffstreamQoE())

    f, a = scores(frozen), scores(adaptive)
    assert slot_trace(frozen, mode="interactive", fps=10.0, duration_s=60.0).stall_s == (
        pytest.approx(40.1))
    for name in PRESETS:
        assert a[name] > f[name], name
    # pensieve-log, 15 chunks of 4 s: frozen (15 ln(4300/300) - 2.66 * 40.1) / 15 = -4.45,
    # adaptive ln 2.5 = 0.92
    assert f["pensieve-log"] == pytest.approx(math.log(4300 / 300) - 2.66 * 40.1 / 15)
    assert a["pensieve-log"] == pytest.approx(math.log(2.5))
    # per slot (chunk_s null) the frozen arm won: 40.1 s of stall spread over 600 "chunks"
    trace_f = slot_trace(frozen, mode="interactive", fps=10.0, duration_s=60.0)
    trace_a = slot_trace(adaptive, mode="interactive", fps=10.0, duration_s=60.0)
    for spec in (LIN, LOG, HD, PUF):
        assert score(spec, trace_f) > score(spec, trace_a), spec.preset


def test_playback_display_timeline_counts_webrtc_freezes() -> None:
    # playback starts at 1.0; 0.5 s rebuffer before frame 4; frame 7 lost (a repeat)
    display = [1.0, 1.1, 1.2, 1.3, 1.9, 2.0, 2.1, None, 2.3, 2.4]
    recs = [make_record(k, deadline_s=None, display_s=display[k], latency_s=None,
                        shown=display[k] is not None, stall_s=0.5 if k == 4 else 0.0,
                        stall=k in (4, 7)) for k in range(10)]
    s = summarise_arm(recs, mode="playback", fps=10.0, pixels=1, duration_s=1.0,
                      weights=DiffstreamQoE(), offered_bytes=1.0)
    assert (s.freezes, s.freeze_s) == (1, pytest.approx(0.5))  # rebuffer events, unchanged
    # timeline [1.0, 2.5]: 1.3 -> 1.9 = 0.6 s > max(3 * 0.1, 0.25) is a freeze; the 0.2 s
    # repeat gap is below max(3 * 1.1 / 6, 1.1 / 6 + 0.15) = 0.55 s
    assert (s.freeze_count, s.total_freezes_duration_s) == (1, pytest.approx(0.6))
    assert (s.pauses, s.total_pauses_duration_s) == (0, 0.0)
    assert s.rebuffer_ratio == pytest.approx(0.5 / (1.0 + 0.5))
    assert s.stalled_pct == pytest.approx(100.0 * 0.6 / 1.5)


def test_playback_timeline_starts_before_rebuffering_that_precedes_the_first_shown_frame(
) -> None:
    # frame 0 arrived late (0.3 s rebuffer) but cannot be shown; frame 1 plays at 1.4, so
    # playback started at 1.4 - 0.1 - 0.3 = 1.0 and ends 0.5 s of video + 0.3 s later
    recs = [make_record(0, deadline_s=None, shown=False, display_s=None, latency_s=None,
                        stall_s=0.3, stall=True)]
    recs += [make_record(k, deadline_s=None, display_s=1.3 + 0.1 * k, latency_s=None)
             for k in range(1, 5)]
    assert display_window(recs, mode="playback", fps=10.0, duration_s=0.5) == (
        pytest.approx(1.0), pytest.approx(1.8))
    # nothing shown: only the length (video + rebuffering) matters
    start, end = display_window(recs[:1], mode="playback", fps=10.0, duration_s=0.5)
    assert end - start == pytest.approx(0.8)


def test_long_outage_is_a_pause_in_the_new_counters_only() -> None:
    # 10 fps, 80 frames, L = 0.2: frames 10..69 lost, a 6.1 s display gap
    recs = [make_record(k) if not 10 <= k < 70 else
            make_record(k, shown=False, display_s=None, latency_s=None, deadline_met=False)
            for k in range(80)]
    s = summarise_arm(recs, mode="interactive", fps=10.0, pixels=1, duration_s=8.0,
                      weights=DiffstreamQoE(), offered_bytes=1.0)
    assert (s.freezes, s.freeze_s) == (1, pytest.approx(6.1))  # today's column: a freeze
    assert (s.freeze_count, s.pauses) == (0, 1)
    assert s.total_pauses_duration_s == pytest.approx(6.1)
    assert s.stalled_pct == pytest.approx(100.0 * 6.1 / 8.0)


# ------------------------------------------------------------------ the qoe: schema
def test_old_qoe_mapping_loads_as_diffstream_with_the_same_qoe(tmp_path: Path) -> None:
    path = tiny_scenario(tmp_path, qoe={"metric": "psnr", "switch_weight": 1.0,
                                        "stall_weight": 50.0})
    scenario, _ = load_scenario(path)
    assert scenario.qoe == DiffstreamQoE(metric="psnr", switch_weight=1.0, stall_weight=50.0)
    assert scenario.qoe.metric == "psnr"
    s = summarise_arm(_interactive_arm(), mode="interactive", fps=10.0, pixels=4096,
                      duration_s=1.0, weights=scenario.qoe, offered_bytes=11000.0)
    # the hand computation of test_qoe's interactive arm: mean 31.5, switches 5/9, 0.52 s
    assert s.qoe == s.qoe_diffstream == pytest.approx(31.5 - 5 / 9 - 50.0 * 0.52)
    assert s.qoe_preset == "diffstream"


@pytest.mark.parametrize(("qoe", "want"), [
    ({"preset": "puffer"}, PufferQoE()),
    ({"preset": "pensieve-log", "r_min_kbps": 100}, PensieveLogQoE(r_min_kbps=100.0)),
    ({"preset": "puffer", "chunk_s": None}, PufferQoE(chunk_s=None)),
    ({"preset": "pensieve-hd", "chunk_s": 2}, PensieveHdQoE(chunk_s=2.0)),
    ({}, DiffstreamQoE()),
])
def test_presets_load(tmp_path: Path, qoe: dict[str, Any], want: object) -> None:
    scenario, _ = load_scenario(tiny_scenario(tmp_path, qoe=qoe))
    assert scenario.qoe == want


def test_unknown_preset_names_qoe_preset_and_lists_presets(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_scenario(tiny_scenario(tmp_path, qoe={"preset": "pensive-lin"}))
    msg = str(err.value)
    assert "qoe.preset" in msg and "pensive-lin" in msg
    for name in PRESETS:
        assert f"'{name}'" in msg


@pytest.mark.parametrize(("qoe", "field"), [
    ({"preset": "puffer", "switch_weight": 1.0}, "qoe.switch_weight"),
    ({"metric": "psnr", "rebuffer_penalty": 1.0}, "qoe.rebuffer_penalty"),
    ({"preset": "pensieve-hd", "ladder_kbps": [300, 750], "rewards": [1]}, "rewards"),
    ({"preset": "pensieve-lin", "rebuffer_penalty": -1}, "qoe.rebuffer_penalty"),
    ({"preset": "puffer", "chunk_s": 0}, "qoe.chunk_s"),
    ({"metric": "psnr", "chunk_s": 4}, "qoe.chunk_s"),
])
def test_bad_preset_options_fail_at_load(tmp_path: Path, qoe: dict[str, Any], field: str
                                         ) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_scenario(tiny_scenario(tmp_path, qoe=qoe))
