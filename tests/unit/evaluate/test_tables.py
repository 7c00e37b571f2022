"""The common/sent subset logic on a hand-made result table."""

from __future__ import annotations

import math

import numpy as np
import pytest

from diffstream.evaluate.scoring import Scorer
from diffstream.evaluate.tables import REAL, Coded, common_items, rd_rows, rd_table
from diffstream.metrics.quality import psnr

SIDE = 16


def _image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)


def _noisy(img: np.ndarray, amount: int) -> np.ndarray:
    return np.clip(img.astype(int) + amount, 0, 255).astype(np.uint8)


ORIGINALS = {f"c{i}": _image(i) for i in range(4)}


def _results() -> list[Coded]:
    """Codec a sends everything; b skips c2 and c3 at 0.1 bpp and sends all at 1.0."""
    out = []
    for target in (0.1, 1.0):
        for i, (item, orig) in enumerate(ORIGINALS.items()):
            out.append(Coded("a", target, item, orig, _noisy(orig, 4 + i), 100 * (i + 1), True))
            skip = target == 0.1 and i >= 2
            out.append(Coded("b", target, item, orig, None if skip else _noisy(orig, 9),
                             0 if skip else 50 * (i + 1), not skip))
    return out


@pytest.fixture(scope="module")
def rows():
    return rd_rows(_results(), ["a", "b"], Scorer(bootstrap=0))


def _row(rows, codec, target, subset):
    (r,) = [r for r in rows if (r.codec, r.target, r.subset) == (codec, target, subset)]
    return r


def test_common_items_are_the_intersection_of_what_every_codec_sent():
    common = common_items(_results(), ["a", "b"])
    assert common == {0.1: ["c0", "c1"], 1.0: ["c0", "c1", "c2", "c3"]}
    assert common_items(_results(), ["a"]) == {0.1: ["c0", "c1", "c2", "c3"],
                                               1.0: ["c0", "c1", "c2", "c3"]}


def test_a_codec_missing_at_a_target_leaves_no_common_subset():
    res = [r for r in _results() if not (r.codec == "b" and r.target == 1.0)]
    assert common_items(res, ["a", "b"])[1.0] == []


def test_common_rows_use_only_the_shared_crops_and_sent_counts_the_skips(rows):
    a, b = _row(rows, "a", 0.1, "common"), _row(rows, "b", 0.1, "common")
    assert (a.n, a.sent, a.total) == (2, 4, 4)
    assert (b.n, b.sent, b.total) == (2, 2, 4)  # two skips counted in sent, not averaged
    px = SIDE * SIDE
    assert a.bpp == pytest.approx((100 + 200) / 2 / px)  # c0, c1 only
    assert b.bpp == pytest.approx((50 + 100) / 2 / px)
    want = np.mean([psnr(ORIGINALS[f"c{i}"], _noisy(ORIGINALS[f"c{i}"], 4 + i))
                    for i in (0, 1)])
    assert a.psnr_db == pytest.approx(want)


def test_sent_rows_use_each_codecs_own_crops(rows):
    a, b = _row(rows, "a", 0.1, "sent"), _row(rows, "b", 0.1, "sent")
    assert (a.n, a.sent) == (4, 4)
    assert a.bpp == pytest.approx((100 + 200 + 300 + 400) / 4 / (SIDE * SIDE))
    assert (b.n, b.sent, b.total) == (2, 2, 4)
    assert b.bpp == pytest.approx((50 + 100) / 2 / (SIDE * SIDE))
    full = _row(rows, "b", 1.0, "common")
    assert (full.n, full.sent) == (4, 4)


def test_set_metrics_are_computed_on_the_subset(rows):
    a_common, a_sent = _row(rows, "a", 0.1, "common"), _row(rows, "a", 0.1, "sent")
    for r in (a_common, a_sent):
        assert math.isfinite(r.swd) and r.swd > 0 and math.isfinite(r.spectral_ratio)
    assert a_common.swd != a_sent.swd  # two crops, not four


def test_real_floor_rows_per_target_on_the_common_crops(rows):
    floors = {r.target: r for r in rows if r.codec == REAL}
    assert floors[0.1].n == 2 and floors[1.0].n == 4
    assert floors[0.1].subset == "common" and math.isfinite(floors[1.0].swd)
    assert floors[0.1].sent is None and math.isnan(floors[0.1].psnr_db)


def test_rd_table_adds_the_floor_over_every_item():
    rows = rd_table(_results(), ["a", "b"], Scorer(bootstrap=0))
    (overall,) = [r for r in rows if r.subset == "all"]
    assert overall.codec == REAL and overall.n == 4 and math.isnan(overall.target)


def test_an_empty_common_subset_gives_nan_rows_not_zeros():
    res = [r for r in _results() if r.target == 0.1 and (r.codec == "a" or not r.sent)]
    rows = rd_rows(res, ["a", "b"], Scorer(bootstrap=0))
    b = _row(rows, "b", 0.1, "sent")
    assert (b.n, b.sent, b.total) == (0, 0, 2)
    assert math.isnan(b.bpp) and math.isnan(b.psnr_db) and math.isnan(b.swd)
    assert _row(rows, "a", 0.1, "common").n == 0


def test_an_item_given_twice_is_refused():
    res = _results()
    with pytest.raises(ValueError, match="given twice"):
        rd_rows([*res, res[0]], ["a", "b"], Scorer(bootstrap=0))


def test_sent_without_a_reconstruction_is_refused():
    with pytest.raises(ValueError, match="no reconstruction"):
        Coded("a", 0.1, "x", ORIGINALS["c0"], None, 8, True)


# ------------------------------------------------------------------ the fixed set (for BD)
def _scores(skips: dict[tuple[str, float], set[str]], items: int = 4,
            targets: tuple[float, ...] = (0.1, 0.2, 0.4, 0.8, 1.6)) -> list:
    """Two codecs, ``items`` items; ``skips[(codec, target)]`` are the items it skipped."""
    from diffstream.evaluate.tables import ItemScore

    out = []
    for c in ("a", "b"):
        for t in targets:
            for k in range(items):
                i = f"i{k}"
                sent = i not in skips.get((c, t), set())
                out.append(ItemScore(c, t, i, sent, t if sent else 0.0,
                                     30.0 + 10 * t + k if sent else math.nan, 0.9))
    return out


def test_fixed_set_drops_low_targets_until_half_the_items_survive():
    from diffstream.evaluate.tables import fixed_items

    # at 0.1 b skips 3 of 4 items, at 0.2 one: dropping 0.1 keeps 3 of 4 items (>= half)
    scores = _scores({("b", 0.1): {"i0", "i1", "i2"}, ("b", 0.2): {"i3"}})
    assert fixed_items(scores, ["a", "b"]) == ([0.2, 0.4, 0.8, 1.6], ["i0", "i1", "i2"])
    # nothing skipped: every target, every item
    assert fixed_items(_scores({}), ["a", "b"]) == ([0.1, 0.2, 0.4, 0.8, 1.6],
                                                    ["i0", "i1", "i2", "i3"])
    # fewer than 4 targets would be left before half the items survive: the range with the
    # most items among those with >= 4 targets
    scores = _scores({("b", 0.1): {"i0", "i1", "i2"}, ("a", 0.2): {"i0", "i1", "i2"}})
    assert fixed_items(scores, ["a", "b"]) == ([0.1, 0.2, 0.4, 0.8, 1.6], ["i3"])
    # no item sent by both at 4+ targets
    scores = _scores({("b", 0.1): {"i0", "i1", "i2", "i3"}, ("b", 0.2): {"i0", "i1", "i2", "i3"}})
    assert fixed_items(scores, ["a", "b"]) == ([], [])


def test_fixed_rows_average_the_same_items_at_every_target():
    from diffstream.evaluate.tables import fixed_rows

    rows = fixed_rows(_scores({("b", 0.1): {"i0", "i1", "i2"}, ("b", 0.2): {"i3"}}), ["a", "b"])
    assert {r.subset for r in rows} == {"fixed"} and len(rows) == 2 * 4
    for r in rows:  # items i0..i2 at every target: PSNR = 30 + 10 t + mean(0, 1, 2)
        assert r.n == 3
        assert r.psnr_db == pytest.approx(30.0 + 10 * r.target + 1.0)
    (b02,) = [r for r in rows if (r.codec, r.target) == ("b", 0.2)]
    assert (b02.sent, b02.total) == (3, 4)  # its skip is counted, not averaged in
