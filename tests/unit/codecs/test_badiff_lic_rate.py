"""BADiff's hinge target (issue 16, item 1) and stop labels (item 3): LIC's own rate as the
entropy model, the q_op table real crops meet, and teacher stops that depend on H."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from diffstream.codecs.badiff import train as bt
from diffstream.codecs.badiff.lic_rate import LicRate, measure_q_op, q_grid, q_op
from diffstream.codecs.gic.codec import load_bundle
from diffstream.codecs.registry import create_codec
from diffstream.training.crops import CropSampler, to_tensor, to_uint8


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def rate() -> LicRate:
    return LicRate()


@pytest.fixture(scope="module")
def crops() -> np.ndarray:
    return to_uint8(CropSampler().batch(64, 32, np.random.default_rng(11)))


def test_rate_is_lics_ideal_code_length_and_close_to_its_bytes(rate: LicRate,
                                                               crops: np.ndarray) -> None:
    _, coder = load_bundle()
    lic = create_codec("lic")
    for im, budget in zip(crops[:6], (200, 300, 450, 700, 1000, 1500), strict=True):
        enc = lic.encode(im, budget)
        assert not enc.skipped
        q = float(enc.meta["q"])
        ours = float(rate(to_tensor(im), torch.tensor(q), mode="round")) * 32 * 32
        y = lic.model.ae.encode(to_tensor(im))
        ideal = coder.estimate_bits(coder.analyse(y), q)
        assert ours == pytest.approx(ideal, rel=1e-3)  # the codec's own estimate
        assert abs(8 * len(enc.payload) - ours) <= 0.05 * ours + 96  # and its real bytes


def test_ste_reads_the_rounded_rate_and_passes_a_gradient(rate: LicRate,
                                                          crops: np.ndarray) -> None:
    x = to_tensor(crops[:4]).requires_grad_(True)
    q = torch.tensor([0.3, 0.7, 1.5, 3.0])
    ste = rate(x, q, mode="ste")
    assert torch.allclose(ste, rate(x.detach(), q, mode="round"))
    ste.sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    # the noise proxy reads much more at coarse q on small frames: why the hinge uses STE
    torch.manual_seed(0)
    many = to_tensor(crops[:16])
    noisy = float(rate(many, 3.0, mode="noise").median())
    assert noisy > 1.5 * float(rate(many, 3.0, mode="ste").median())  # measured: 2.0x
    with pytest.raises(ValueError, match="multiples of 16"):
        rate(torch.zeros(1, 3, 24, 24), 1.0)


def test_q_op_is_where_the_median_real_crop_costs_h(rate: LicRate, crops: np.ndarray) -> None:
    hs = (0.2, 0.45, 1.0, 2.0)
    table = measure_q_op(rate, crops, hs)
    qs = [q for _, q in table]
    assert all(a > b for a, b in zip(qs, qs[1:], strict=False))  # more budget, finer q
    assert rate.q_lo <= min(qs) and max(qs) <= rate.q_hi
    x = to_tensor(crops)
    for h, q in table:
        med = float(torch.median(rate(x, torch.tensor(q), mode="round")))
        assert med == pytest.approx(h, rel=0.08), (h, q, med)
    # interpolation between the rows, and clamped outside them
    mid = float(q_op(0.3, table))
    assert qs[1] < mid < qs[0]
    assert float(q_op(5.0, table)) == pytest.approx(qs[-1])


def test_code_at_budget_fits_the_budget_at_the_finest_scale(rate: LicRate,
                                                            crops: np.ndarray) -> None:
    x = to_tensor(crops[:8])
    for h in (0.25, 1.0):
        rec, bpp = rate.code_at_budget(x, h)
        assert rec.shape == (8, 32, 32, 3) and rec.dtype == np.uint8
        table = rate.rate_table(x, q_grid(rate.q_lo, rate.q_hi)).numpy()
        for i in range(8):
            fit = table[i] <= h
            assert bpp[i] <= h or not fit.any()
            if fit.any():
                assert bpp[i] == pytest.approx(table[i][np.argmax(fit)])  # the finest fit


def test_teacher_stop_steps_read_the_runs_own_last_image(rate: LicRate,
                                                         crops: np.ndarray) -> None:
    """``stop_steps`` on two synthetic runs: one that never changes (every step is as good
    as the last: stop at once, at every budget) and one whose image appears only at the
    last step (flat grey before). With the distortion weighted heavily (beta 50) nothing
    before the last step is worth sending; at the shipped beta 2 the grey's low rate and
    compute win, at every budget (J ~ 2.1 either way at 2 bpp: compute and rate weigh
    as much as the whole distortion)."""
    table = measure_q_op(rate, crops, bt.LABEL_H)
    im = crops[0]
    still = np.stack([im] * 8)
    assert bt.stop_steps(rate, still, table).tolist() == [0] * len(bt.LABEL_H)
    grey = np.full_like(im, int(im.mean()))
    late = np.stack([grey] * 7 + [im])
    assert bt.stop_steps(rate, late, table, beta=50.0).tolist() == [7] * len(bt.LABEL_H)
    assert bt.stop_steps(rate, late, table).tolist() == [0] * len(bt.LABEL_H)


def test_q_op_table_is_measured_on_training_crops(tmp_path: object) -> None:
    args = argparse.Namespace(seed=0, size=32)
    t = bt.q_op_table(args, CropSampler())
    assert t.shape == (len(bt.LABEL_H), 2)
    assert t[:, 0].tolist() == pytest.approx(list(bt.LABEL_H))
    assert bool((t[1:, 1] < t[:-1, 1]).all())


def test_grad_ratio_measures_the_pull() -> None:
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    base = (w ** 2).sum()
    assert bt.grad_ratio([w], base, 3.0 * base) == pytest.approx(3.0)
    assert bt.grad_ratio([w], base, torch.zeros(())) == 0.0
