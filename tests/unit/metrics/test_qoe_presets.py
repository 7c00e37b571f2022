"""QoE presets, WebRTC freeze/pause counters and the qoe: schema, against hand computations."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from diffstream.errors import ConfigError
from diffstream.metrics.qoe import display_window, summarise_arm, webrtc_events, webrtc_freezes
from diffstream.metrics.qoe_presets import (
    PRESETS,
    DiffstreamQoE,
    PensieveHdQoE,
    PensieveLinQoE,
    PensieveLogQoE,
    PufferQoE,
    SlotTrace,
    pensieve_quality,
    score,
    score_all,
)
from diffstream.pipeline.records import FrameRecord
from diffstream.scenario.load import load_scenario
from tests.conftest import tiny_scenario
from tests.unit.metrics.test_qoe import _interactive_arm, make_record

# ------------------------------------------------------------------ presets on a short trace
# 4 slots at 10 fps, 0.5 s of stall in a 0.4 s session.
TRACE = SlotTrace(
    psnr_db=[30.0, 34.0, None, 31.0],
    ssim=[0.9, None, 0.99, None],
    ssim_db=[10.0, 70.0, None, 12.0],
    rate_kbps=[750.0, 1200.0, 1200.0, 300.0],
    stall_s=0.5,
    duration_s=0.4,
    fps=10.0,
)


def test_pensieve_lin_hand_computed() -> None:
    # q = 0.75, 1.2, 1.2, 0.3 Mbit/s: sum 3.45; switches 0.45 + 0 + 0.9 = 1.35; 4.3 * 0.5 = 2.15
    assert score(PensieveLinQoE(), TRACE) == pytest.approx((3.45 - 2.15 - 1.35) / 4)
    assert score(PensieveLinQoE(rebuffer_penalty=0.0, smooth_penalty=2.0), TRACE) == (
        pytest.approx((3.45 - 0.0 - 2.0 * 1.35) / 4))


def test_pensieve_log_hand_computed() -> None:
    # q = ln 2.5, ln 4, ln 4, ln 1; switches (ln 4 - ln 2.5) + 0 + ln 4; 2.66 * 0.5 = 1.33
    q_sum = math.log(2.5) + 2 * math.log(4.0) + 0.0
    switches = (math.log(4.0) - math.log(2.5)) + 0.0 + math.log(4.0)
    assert score(PensieveLogQoE(), TRACE) == pytest.approx((q_sum - 1.33 - switches) / 4)
    assert score(PensieveLogQoE(), TRACE) == pytest.approx((2 * math.log(2.5) - 1.33) / 4)
    # R_min 750: q = 0, ln 1.6, ln 1.6, ln 0.4
    q_sum = 0.0 + 2 * math.log(1.6) + math.log(0.4)
    switches = math.log(1.6) + 0.0 + (math.log(1.6) - math.log(0.4))
    assert score(PensieveLogQoE(r_min_kbps=750.0), TRACE) == pytest.approx(
        (q_sum - 1.33 - switches) / 4)


def test_pensieve_hd_hand_computed() -> None:
    # rungs 750, 1200, 1200, 300 -> 2, 3, 3, 1: sum 9; switches 1 + 0 + 2 = 3; 8 * 0.5 = 4
    assert score(PensieveHdQoE(), TRACE) == pytest.approx((9.0 - 4.0 - 3.0) / 4)


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
    assert score(PufferQoE(), TRACE) == pytest.approx((102.0 - 50.0 - 98.0) / 4)
    assert score(PufferQoE(rebuffer_penalty=20.0), TRACE) == pytest.approx(
        (102.0 - 10.0 - 98.0) / 4)
    none = SlotTrace([None], [None], [None], [0.0], 0.0, 0.1, 10.0)
    assert score(PufferQoE(), none) == 0.0  # no score at all: Puffer's MIN_SSIM


def test_diffstream_hand_computed() -> None:
    # Q = 30, 34, 0, 31: mean 23.75; switches 4, 34, 31 -> 23; stalled 0.5 / 0.4 = 1.25
    assert score(DiffstreamQoE(), TRACE) == pytest.approx(23.75 - 23.0 - 50.0 * 1.25)
    # ssim_db metric: 10, 70, 0, 12 (no clamp): mean 23; switches 60, 70, 12 -> 142 / 3
    assert score(DiffstreamQoE(metric="ssim_db", stall_weight=0.0), TRACE) == pytest.approx(
        23.0 - 142.0 / 3)


def test_score_all_uses_the_chosen_options_and_defaults_elsewhere() -> None:
    got = score_all(TRACE, PufferQoE(rebuffer_penalty=20.0))
    assert set(got) == set(PRESETS)
    assert got["puffer"] == pytest.approx((102.0 - 10.0 - 98.0) / 4)
    assert got["pensieve-hd"] == pytest.approx((9.0 - 4.0 - 3.0) / 4)
    assert got["diffstream"] == pytest.approx(23.75 - 23.0 - 62.5)


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
    s = summarise_arm(_rate_arm(), mode="interactive", fps=10.0, pixels=4096, duration_s=0.8,
                      weights=PensieveLinQoE(), offered_bytes=1.0)
    # displays 0.2, 0.3, 0.7, 0.8, 0.9 in [0.2, 1.0]: the 0.4 s gap is the one freeze
    assert (s.freezes, s.freeze_s) == (1, pytest.approx(0.4))
    assert (s.freeze_count, s.total_freezes_duration_s, s.pauses) == (1, pytest.approx(0.4), 0)
    assert s.rebuffer_ratio == pytest.approx(0.4 / 0.8)
    assert s.stalled_pct == pytest.approx(100.0 * 0.4 / 0.8)
    # R kbit/s = payload bits * 10: 80, 200, then 200 while stale (x3), 80 (1000 of 4000
    # bytes), 120, 120. lin: sum 1.2 Mbit/s, switches 0.12 + 0.12 + 0.04 = 0.28, 4.3 * 0.4
    assert s.qoe_preset == "pensieve-lin"
    assert s.qoe == s.qoe_pensieve_lin == pytest.approx((1.2 - 1.72 - 0.28) / 8)
    # hd: 80/300, 200/300 (x4), 80/300, 120/300 (x2) -> sum 1200/300 = 4;
    # switches (120 + 120 + 40)/300; 8 * 0.4 = 3.2
    assert s.qoe_pensieve_hd == pytest.approx((4.0 - 3.2 - 280.0 / 300.0) / 8)
    q_sum = 2 * math.log(80 / 300) + 4 * math.log(200 / 300) + 2 * math.log(120 / 300)
    switches = 2 * math.log(2.5) + math.log(1.5)
    assert s.qoe_pensieve_log == pytest.approx((q_sum - 2.66 * 0.4 - switches) / 8)
    # puffer: SSIM dB 10 everywhere: (80 - 100 * 0.4) / 8; diffstream: 30 - 50 * 0.4 / 0.8
    assert s.qoe_puffer == pytest.approx((80.0 - 40.0) / 8)
    assert s.qoe_diffstream == pytest.approx(30.0 - 50.0 * 0.5)


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
])
def test_bad_preset_options_fail_at_load(tmp_path: Path, qoe: dict[str, Any], field: str
                                         ) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_scenario(tiny_scenario(tmp_path, qoe=qoe))
