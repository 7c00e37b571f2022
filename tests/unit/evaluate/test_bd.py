"""Bjøntegaard deltas against hand-checkable curves."""

from __future__ import annotations

import math

import numpy as np
import pytest

from diffstream.evaluate.bd import bd_pair, bd_rows
from diffstream.evaluate.tables import RdRow

NAN = float("nan")
RATES = np.array([0.1, 0.2, 0.4, 0.8, 1.6])


def _curve(rates: np.ndarray) -> np.ndarray:
    """PSNR linear in log10(rate): 10 dB per decade (exact for a cubic and for PCHIP)."""
    return 30.0 + 10.0 * np.log10(rates / 0.1)


def _row(codec: str, target: float, bpp: float, psnr: float, n: int = 5) -> RdRow:
    return RdRow(codec, target, "common", n, n, n, bpp, psnr, *[NAN] * 7)


@pytest.mark.parametrize("method", ["cubic", "pchip"])
def test_a_curve_needing_twice_the_rate_has_bd_rate_plus_100_percent(method):
    anchor = (RATES, _curve(RATES))
    test = (2 * RATES, _curve(RATES))  # same PSNRs at twice the bits
    rate, psnr, reason = bd_pair(anchor, test, method)
    assert rate == pytest.approx(100.0, abs=1e-6)
    assert psnr == pytest.approx(-10.0 * math.log10(2.0), abs=1e-6)  # -3.01 dB
    # the rate ranges overlap by 60 % in log rate: the package's warning is kept as a note
    assert reason.startswith("Insufficient curve overlap: '60.00'")
    rate, psnr, _ = bd_pair(test, anchor, method)  # and the other way round: half the bits
    assert rate == pytest.approx(-50.0, abs=1e-6)
    assert psnr == pytest.approx(10.0 * math.log10(2.0), abs=1e-6)


@pytest.mark.parametrize("method", ["cubic", "pchip"])
def test_the_same_curve_gives_zero(method):
    curve = (RATES, _curve(RATES) + 0.3 * np.sin(RATES))  # any monotonic shape
    rate, psnr, reason = bd_pair(curve, curve, method)
    assert rate == pytest.approx(0.0, abs=1e-9) and psnr == pytest.approx(0.0, abs=1e-9)
    assert reason == ""


def test_fewer_than_four_points_is_nan_with_a_reason():
    rate, psnr, reason = bd_pair((RATES[:3], _curve(RATES[:3])), (RATES, _curve(RATES)), "cubic")
    assert math.isnan(rate) and math.isnan(psnr)
    assert "the anchor has 3 RD points" in reason


def test_repeated_rates_are_nan_with_a_reason():
    rates = np.array([0.1, 0.2, 0.2, 0.2, 0.4])
    rate, _, reason = bd_pair((RATES, _curve(RATES)), (rates, _curve(rates) + [0, 0, 1, 2, 0]),
                              "cubic")
    assert math.isnan(rate) and "the codec has 3 distinct rates" in reason


def test_curves_that_do_not_overlap_are_nan_with_the_packages_warning():
    far = RATES * 1000
    rate, psnr, reason = bd_pair((RATES, _curve(RATES)), (far, _curve(RATES) + 100), "cubic")
    assert math.isnan(rate) and math.isnan(psnr) and "do not overlap" in reason


def test_bd_rows_take_the_common_rows_against_the_first_codec():
    rows = []
    for t, r in zip((0.1, 0.2, 0.4, 0.8, 1.6), RATES, strict=True):
        p = float(_curve(np.array([r]))[0])
        rows += [_row("jpeg", t, r, p), _row("gic", t, r / 2, p), _row("one", t, r, p, n=0)]
        # sent rows must be ignored: this one would change the answer
        rows.append(RdRow("gic", t, "sent", 5, 5, 5, r * 4, p, *[NAN] * 7))
    out = {(b.codec, b.method): b for b in bd_rows(rows, ["jpeg", "gic", "one"])}
    assert out[("gic", "cubic")].bd_rate_pct == pytest.approx(-50.0, abs=1e-6)
    assert out[("gic", "pchip")].points == 5 and out[("gic", "cubic")].anchor == "jpeg"
    assert math.isnan(out[("one", "cubic")].bd_rate_pct)  # no common points at all
    assert "0 RD points" in out[("one", "cubic")].reason
    assert bd_rows(rows, ["jpeg"]) == []


@pytest.mark.parametrize("method", ["cubic", "pchip"])
def test_a_repeated_rate_is_merged_not_a_crash(method):
    rates = np.array([0.1, 0.2, 0.4, 0.4, 0.8, 1.6])  # a codec that stopped growing once
    psnrs = _curve(rates) + np.array([0, 0, -0.2, 0.2, 0, 0])
    rate, psnr, reason = bd_pair((RATES, _curve(RATES)), (rates, psnrs), method)
    assert rate == pytest.approx(0.0, abs=1.0) and psnr == pytest.approx(0.0, abs=0.1)
    assert "repeated rates or PSNRs (merged" in reason


def test_bd_uses_the_fixed_set_when_there_is_one():
    """Per-target common rows that make b look twice as costly, and fixed rows (one set of
    items) on which b needs half the bits of a: BD follows the fixed rows."""
    rows = []
    for t, r in zip(RATES, RATES, strict=True):
        q = float(_curve(np.array([r]))[0])
        rows += [_row("a", t, r, q), _row("b", t, 2 * r, q)]  # common: b costs 2x
        rows += [RdRow("a", t, "fixed", 3, 5, 5, r, q, *[NAN] * 7),
                 RdRow("b", t, "fixed", 3, 5, 5, r / 2, q, *[NAN] * 7)]
    (cubic, _pchip) = bd_rows(rows, ["a", "b"])
    assert cubic.subset == "fixed" and cubic.items == 3
    assert cubic.bd_rate_pct == pytest.approx(-50.0, abs=1e-6)
    common_only = [r for r in rows if r.subset == "common"]
    (cubic, _pchip) = bd_rows(common_only, ["a", "b"])
    assert cubic.subset == "common" and cubic.bd_rate_pct == pytest.approx(100.0, abs=1e-6)
    assert "per-target common subsets" in cubic.reason
