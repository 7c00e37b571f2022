"""Throughput prediction error (metrics/prediction.py): Sabre's over/under split on a
hand-made record list, and the per-arm summary that carries it to summary.csv."""

from __future__ import annotations

import math

import pytest

from diffstream.metrics.prediction import prediction_error
from diffstream.metrics.qoe import QoEWeights, summarise_arm
from diffstream.output.report import read_frames_jsonl, write_frames_jsonl
from diffstream.pipeline.records import FrameRecord
from tests.unit.metrics.test_qoe import make_record

# (prediction, measured): over by 50 % and 10 %, under by 20 % and exact (counts as under,
# Sabre's "good estimate"), and frames that do not count: no prediction, no sample, inf
PAIRS = [(1.5e6, 1e6), (1.1e6, 1e6), (0.8e6, 1e6), (2e6, 2e6),
         (None, 1e6), (1e6, None), (1e6, math.inf)]


def _records() -> list[FrameRecord]:
    return [make_record(i, throughput_pred_bps=p, throughput_bps=m)
            for i, (p, m) in enumerate(PAIRS)]


def test_over_and_under_estimates_by_hand() -> None:
    pe = prediction_error(_records())
    assert pe.frames == 4
    assert pe.over_pct == pytest.approx(50.0)
    assert pe.over_err == pytest.approx((0.5 + 0.1) / 2)
    assert pe.under_pct == pytest.approx(50.0)
    assert pe.under_err == pytest.approx((0.2 + 0.0) / 2)


def test_no_predictions_gives_nan_not_zero() -> None:
    pe = prediction_error([make_record(0), make_record(1)])  # no column values
    assert pe.frames == 0
    assert all(math.isnan(v) for v in (pe.over_pct, pe.over_err, pe.under_pct, pe.under_err))


def test_summary_carries_the_prediction_error() -> None:
    s = summarise_arm(_records(), mode="interactive", fps=10.0, pixels=4096, duration_s=0.7,
                      weights=QoEWeights(), offered_bytes=1e4)
    assert s.pred_frames == 4
    assert (s.pred_over_pct, s.pred_under_pct) == pytest.approx((50.0, 50.0))
    assert (s.pred_over_err, s.pred_under_err) == pytest.approx((0.3, 0.1))


def test_columns_round_trip_through_the_frame_log(tmp_path) -> None:
    path = tmp_path / "frames.jsonl"
    write_frames_jsonl(path, _records())
    back = read_frames_jsonl(path)
    assert [(r.throughput_pred_bps, r.throughput_bps) for r in back][:4] == PAIRS[:4]
