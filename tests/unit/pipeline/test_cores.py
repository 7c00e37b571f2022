"""The typed record halves and the sender core that both modes share."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from diffstream.live import protocol as P
from diffstream.pipeline.encoder import ArmInfo, EncodedFrame
from diffstream.pipeline.records import (
    RECEIVER_FIELDS,
    SENDER_FIELDS,
    Arrival,
    FrameRecord,
    Outcome,
)
from diffstream.pipeline.sender_core import LinkState, SenderCore, delivery_report
from diffstream.scenario.load import load_scenario
from diffstream.transport.packets import wire_bytes_for_payload
from tests.conftest import tiny_scenario


def _core(tmp_path: Path, policy: str = "rate") -> SenderCore:
    sc, _ = load_scenario(tiny_scenario(tmp_path, arms=[{"codec": "jpeg",
                                                          "policy": {"kind": policy}}]))
    return SenderCore(sc, sc.arms[0], ArmInfo(min_bits=100, progressive=False, rq=None,
                                              header_bytes=40))


def _enc(header_bytes: int = 90, payload: int = 500) -> EncodedFrame:
    return EncodedFrame(frame=bytes(header_bytes + payload), payload_bytes=payload,
                        header_bytes=header_bytes, skipped=False, reason="", steps=1,
                        encode_ms=1.0, encode_charged_s=0.002, send_s=0.102)


def test_live_bodies_are_the_record_halves() -> None:
    assert set(P.FRAME_INFO) == {*SENDER_FIELDS, "frame_len"}
    assert set(RECEIVER_FIELDS) <= set(P.REPORT_INFO)
    # the receiver's throughput sample is an Arrival field (the record logs it), so the
    # report's own extras are the rest
    assert "throughput_bps" in RECEIVER_FIELDS
    assert set(P.REPORT_INFO) - set(RECEIVER_FIELDS) == {"buffer_s", "offset_err_s", "rtt_s"}


def test_compose_and_split_round_trip(tmp_path: Path) -> None:
    core = _core(tmp_path)
    tx = core.sender_half(capture_s=0.1, deadline_s=0.4, budget_bits=4000, enc=_enc(),
                          send_s=0.102, wire_bytes=630, packets=1, throughput_est_bps=None,
                          link=LinkState())
    arrival = Arrival(0.13, 0.14, 630, True)
    outcome = Outcome.missing("")
    outcome.shown, outcome.display_s = True, 0.15
    rec = FrameRecord.compose(7, tx, arrival, outcome)
    assert rec.latency_s == pytest.approx(0.05)
    assert math.isnan(rec.capacity_bps)  # unknown capacity (live, unshaped) is NaN in logs
    assert rec.arrival() == arrival and rec.outcome() == outcome
    assert rec.sender_half().budget_bits == 4000 and rec.bpp == 500 * 8 / core.pixels


def test_observation_plans_with_the_last_frames_header(tmp_path: Path) -> None:
    """The live sender once planned every frame with a guessed header; the core refreshes it
    from each encoded frame, in both modes."""
    core = _core(tmp_path)
    before = core.observe(0, 0.0, 0.0, 0.3).wire_bytes(8000)
    assert before == wire_bytes_for_payload(8000, 40, core.mtu)
    core.on_encoded(_enc(header_bytes=90))
    after = core.observe(1, 0.1, 0.1, 0.4).wire_bytes(8000)
    assert after == wire_bytes_for_payload(8000, 90, core.mtu) and after > before
    assert core.observe(1, 0.1, 0.1, 0.4).encode_s == pytest.approx(0.002)


def test_delivery_report_counts_missing_packets(tmp_path: Path) -> None:
    core = _core(tmp_path)
    tx = core.sender_half(capture_s=0.0, deadline_s=0.3, budget_bits=4000, enc=_enc(),
                          send_s=0.0, wire_bytes=3000, packets=3, throughput_est_bps=None,
                          link=LinkState(packets_dropped=1, packets_lost=1))
    r = delivery_report(0, tx, Arrival(0.1, 0.1, 1000, False), throughput_bps=1e5,
                        sent_at_s=0.1, buffer_s=0.0, first_packet_bytes=1000)
    assert r.packets_missing == 2
    unshaped = core.sender_half(capture_s=0.0, deadline_s=0.3, budget_bits=4000, enc=_enc(),
                                send_s=0.0, wire_bytes=3000, packets=3,
                                throughput_est_bps=None, link=LinkState())
    # live without shaping: an incomplete frame lost at least one packet
    assert delivery_report(0, unshaped, Arrival(0.1, 0.1, 1000, False), throughput_bps=None,
                           sent_at_s=0.1, buffer_s=0.0,
                           first_packet_bytes=1000).packets_missing == 1
    assert delivery_report(0, unshaped, Arrival(0.1, 0.1, 3000, True), throughput_bps=None,
                           sent_at_s=0.1, buffer_s=0.0,
                           first_packet_bytes=1000).packets_missing == 0


def test_sender_half_logs_the_policys_prediction(tmp_path: Path) -> None:
    core = _core(tmp_path, "mpc")
    core.view.samples.extend((1e5, 2e5, 4e5))
    obs = core.observe(3, 0.3, 0.3, 0.6)
    core.budget(obs)
    expected = core.arm.policy.predicted_throughput_bps(obs)
    assert expected is not None and expected != core.throughput_estimate()  # robust: lower
    half = core.sender_half(capture_s=0.3, deadline_s=0.6, budget_bits=800, enc=_enc(),
                            send_s=0.302, wire_bytes=630, packets=1, throughput_est_bps=None,
                            link=LinkState())
    assert half.throughput_pred_bps == expected
    # a policy without a prediction (fixed) logs None
    (tmp_path / "f").mkdir()
    fixed = _core(tmp_path / "f", "fixed")
    fixed.view.samples.append(1e5)
    fixed.budget(fixed.observe(0, 0.0, 0.0, 0.3))
    assert fixed.prediction_bps is None
