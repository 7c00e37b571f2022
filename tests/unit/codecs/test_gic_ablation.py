"""Algorithm 1 line 10 under both readings, and the bench_gic ablation's JSON schema."""

from __future__ import annotations

import importlib.util
import io
import json
import math
import sys

import numpy as np
import pytest
import torch

from diffstream.codecs.gic.sampler import SamplerConfig, reverse_sample
from diffstream.codecs.registry import create_codec
from diffstream.content.sources import pan_sequence
from diffstream.evaluate.images import Crop
from diffstream.evaluate.scoring import Scorer
from tests.conftest import ROOT

SHAPE = (32, 32)


def _bench():
    spec = importlib.util.spec_from_file_location("bench_gic", ROOT / "benchmarks" / "bench_gic.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_gic", mod)  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def gic():
    """Loads the shipped weights once (the slow part), in setup rather than in a test."""
    return create_codec("gic", device="cpu")


@pytest.fixture(scope="module")
def frames():
    src = pan_sequence(*SHAPE)
    return [src.frame(k) for k in (0, 150)]


def test_line10_option_is_validated():
    assert SamplerConfig().line10 == "alpha_i"
    with pytest.raises(ValueError, match="line10"):
        SamplerConfig(line10="alpha")


def test_alpha_next_matches_hand_computation():
    """alpha at the level the step lands on: q1 for the first step, 0 (none) for the last."""
    y = torch.tensor([[[[0.3, 1.1, -0.4]]]])

    def stub(v: torch.Tensor, q: torch.Tensor) -> torch.Tensor:  # D(y, q) = 0.5 y + 0.1 q
        return 0.5 * v + 0.1 * q.view(-1, 1, 1, 1)

    cfg = SamplerConfig(steps=2, beta=0.075, q_min=0.03, line10="alpha_next")
    out = reverse_sample(stub, y, 0.9, cfg, torch.Generator().manual_seed(3))
    eps = torch.randn(y.shape, generator=torch.Generator().manual_seed(3))
    d0 = (0.5 * y + 0.09 - y) / 0.9
    y1 = y + (0.9 - 0.13) * d0 + 0.075 * math.sqrt(0.13 - 0.03) * (eps - d0)
    assert torch.allclose(out, 0.5 * y1 + 0.013, atol=1e-6)  # last step: plain Euler to 0


def test_both_line10_readings_decode_deterministically_and_differ(gic, frames):
    enc = gic.encode(frames[0], 400)
    assert not enc.skipped
    out = {}
    for reading in ("alpha_i", "alpha_next"):
        a = create_codec("gic", device="cpu", line10=reading)
        b = create_codec("gic", device="cpu", line10=reading)  # a second decoder, same seed
        out[reading] = a.decode(enc.payload, enc.meta, SHAPE)
        assert np.array_equal(out[reading], b.decode(enc.payload, enc.meta, SHAPE))
    assert not np.array_equal(out["alpha_i"], out["alpha_next"])
    # alpha_next injects nothing on the last step (q_N = 0): nearly deterministic, so it is
    # closer to the beta 0 decoder than alpha_i is
    det = create_codec("gic", device="cpu", beta=0.0).decode(enc.payload, enc.meta, SHAPE)
    dist = {k: np.abs(v.astype(int) - det).mean() for k, v in out.items()}
    assert dist["alpha_next"] < dist["alpha_i"]


def test_ablation_json_schema_on_two_tiny_crops(gic, frames):
    bench = _bench()
    crops = [Crop("pan", k, 0, 0, f) for k, f in enumerate(frames)]
    variants = [v for v in bench.ablation_variants(betas=(0.0, 0.075), q1s=(0.13,), steps=(2,))
                if v.ablation != "line10" or "gaussian" in v.label]
    log = io.StringIO()
    result = bench.ablation(crops, targets=(0.4,), variants=variants,
                            scorer=Scorer(seed=0, bootstrap=5), log=log)
    result = json.loads(json.dumps(result))  # JSON-clean
    assert result["schema"] == bench.ABLATION_SCHEMA
    assert result["n_crops"] == 2 and result["crops"] == ["pan#0", "pan#1"]
    assert result["size"] == list(SHAPE) and result["targets"] == [0.4]
    (rate,) = result["rates"]
    assert rate["sent"] == 2 and 0 < rate["bpp"] <= 0.4
    assert rate["q0"]["min"] <= rate["q0"]["median"] <= rate["q0"]["max"]
    assert set(rate["swd_floor"]) == {"value", "ci_low", "ci_high"}
    assert len(result["rows"]) == len(variants)
    keys = {"ablation", "label", "codec", "options", "target_bpp", "n", "psnr_db", "ms_ssim",
            "swd", "swd_ci_low", "swd_ci_high", "swd_unpaired", "spectral_ratio"}
    for row in result["rows"]:
        assert set(row) == keys
        assert row["n"] == 2 and row["swd_ci_low"] <= row["swd"] <= row["swd_ci_high"]
        assert np.isfinite(row["psnr_db"]) and row["spectral_ratio"] > 0
    assert {r["ablation"] for r in result["rows"]} == {"reference", "line10", "noise", "beta",
                                                       "q1", "steps"}
    by = {(r["ablation"], r["label"]): r for r in result["rows"]}
    # the same decoder scores the same under every ablation that names it; different
    # decoders do not
    assert by[("noise", "gaussian")]["swd"] == by[("q1", "q1 0.13")]["swd"]
    det, gauss = by[("noise", "deterministic (beta 0)")], by[("noise", "gaussian")]
    assert det["psnr_db"] != gauss["psnr_db"]
    assert (by[("line10", "alpha_i, gaussian")]["psnr_db"]
            != by[("line10", "alpha_next, gaussian")]["psnr_db"])
    assert "ablation 0.4 bpp" in log.getvalue()  # progress went to the log, not stdout
