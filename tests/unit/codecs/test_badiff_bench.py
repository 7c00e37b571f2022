"""benchmarks/bench_badiff.py (issue 16 item 4): the JSON's schema on a tiny random BADiff,
skips counted apart from the bitrate error, and the real-images check."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffstream.backbones.ddpm import DDPMConfig
from diffstream.codecs.badiff.model import BADiff, BADiffConfig

ROOT = Path(__file__).resolve().parents[3]
DDPM_WEIGHTS = ROOT / "diffstream" / "backbones" / "weights" / "ddpm.safetensors"
LIC_WEIGHTS = ROOT / "diffstream" / "codecs" / "gic" / "weights" / "gic.safetensors"


def _bench():  # noqa: ANN202 - the benchmark script as a module
    spec = importlib.util.spec_from_file_location("bench_badiff",
                                                  ROOT / "benchmarks" / "bench_badiff.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_badiff"] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture
def real_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "real"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for k in range(2):
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(
            folder / f"im{k}.png")
    return folder


def _tiny_badiff(out: Path) -> Path:
    """A random BADiff with a tiny U-Net (fast sampling), the shipped H_phi table layout."""
    torch.manual_seed(0)
    ddpm = DDPMConfig(channels=(8, 16, 16), norm_groups=4, attention=(False, False, False))
    model = BADiff(BADiffConfig(ddpm=asdict(ddpm))).eval()
    model.predictor.entropy_bottleneck.update(force=True)
    model.save(out)
    return out


def _frame(bench, target: float, bits: int | None, steps: int = 10):  # noqa: ANN001, ANN202
    rng = np.random.default_rng(steps)
    img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    return bench.Frame(target=target, sent=bits is not None, bits=bits or 0, steps=steps,
                       decoded=img if bits is not None else None, full=img)


def test_skipped_frames_count_in_skip_rate_not_in_bpp_error() -> None:
    bench = _bench()
    pixels = 32 * 32
    sent = _frame(bench, 0.3, 410, steps=40)  # ~0.1 bpp over the target
    skipped = _frame(bench, 0.3, None, steps=60)
    frames = {"m": {r: [sent, skipped] for r in bench.REGIMES}}
    real = np.random.default_rng(1).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    s = bench.summarise(frames, real, real, bootstrap=0)
    # the skip is not a 0-bpp frame (that would make the mean 0.2)
    assert s["bpp_error"]["m"]["low"] == pytest.approx(410 / pixels - 0.3)
    assert s["skip_rate"]["m"]["low"] == pytest.approx(0.5)
    assert s["bpp"]["m"]["low"] == pytest.approx(410 / pixels)
    assert s["steps"]["m"]["low"] == pytest.approx(50.0)  # steps count every frame
    assert s["n_sent"]["m"]["low"] == 1 and s["n"]["m"]["low"] == 2
    assert s["msssim"]["m"]["low"] == pytest.approx(1.0)  # decoded == its full-step output


def test_all_skipped_cell_has_no_image_metrics() -> None:
    bench = _bench()
    frames = {"m": {"low": [_frame(bench, 0.3, None)]}}
    real = np.zeros((2, 32, 32, 3), dtype=np.uint8)
    s = bench.summarise(frames, real, real, bootstrap=0)
    assert s["skip_rate"]["m"]["low"] == 1.0
    assert math.isnan(s["bpp_error"]["m"]["low"]) and math.isnan(s["swd"]["m"]["low"])


def test_missing_real_images_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bench = _bench()
    rc = bench.main(["--real-images", str(tmp_path / "nope"), "--samples", "1",
                     "--json", str(tmp_path / "o.json"), "--quiet"])
    assert rc == 2
    assert "nope" in capsys.readouterr().err
    assert not (tmp_path / "o.json").exists()


def test_unknown_method_is_exit_2(tmp_path: Path, real_dir: Path) -> None:
    bench = _bench()
    assert bench.main(["--real-images", str(real_dir), "--samples", "1", "--methods",
                       "no-such-codec", "--json", str(tmp_path / "o.json"), "--quiet"]) == 2


def test_summary_schema_is_standard_json() -> None:
    bench = _bench()
    frames = {m: {r: [_frame(bench, 0.3, 300), _frame(bench, 0.3, None)] for r in bench.REGIMES}
              for m in ("badiff", "cascade-lic")}
    frames["cascade-lic"]["high"] = [_frame(bench, 1.5, None)]  # an all-skipped cell: NaN
    real = np.random.default_rng(1).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    data = json.loads(json.dumps(bench._clean(bench.summarise(frames, real, real,
                                                              bootstrap=5)), allow_nan=False))
    for key in ("swd", "swd_floor", "bpp_error", "skip_rate", "steps"):
        assert set(data[key]) == {"badiff", "cascade-lic"}
        assert all(set(cells) == {"low", "med", "high"} for cells in data[key].values())
    assert data["swd"]["cascade-lic"]["high"] is None and data["skip_rate"]["cascade-lic"][
        "high"] == 1.0


@pytest.mark.slow  # ~7 s: loads the shipped LIC and DDPM, codes 18 frames, runs the SWD
@pytest.mark.skipif(not DDPM_WEIGHTS.is_file() or not LIC_WEIGHTS.is_file(),
                    reason="needs the shipped DDPM and LIC weights (python -m "
                           "diffstream.training ddpm; python -m diffstream.training gic)")
def test_json_schema_on_a_tiny_random_model(tmp_path: Path, real_dir: Path) -> None:
    bench = _bench()
    weights = _tiny_badiff(tmp_path / "w")
    out = tmp_path / "bench.json"
    methods = ["badiff", f"badiff.coder={bench.OTHER_CODER}", "cascade-lic"]
    rc = bench.main(["--real-images", str(real_dir), "--samples", "2", "--weights",
                     str(weights), "--methods", ",".join(methods), "--full-steps", "3",
                     "--latency-samples", "0", "--bootstrap", "10", "--json", str(out),
                     "--quiet"])
    assert rc == 0
    data = json.loads(out.read_text())  # standard JSON (no NaN)
    for key in ("swd", "swd_floor", "bpp_error", "skip_rate", "steps", "msssim"):
        assert set(data[key]) == set(methods), key
        for method in methods:
            assert set(data[key][method]) == {"low", "med", "high"}, (key, method)
    for method in methods:
        for r in ("low", "med", "high"):
            assert 0.0 <= data["skip_rate"][method][r] <= 1.0
            assert 1 <= data["steps"][method][r] <= 3
            if data["n_sent"][method][r]:
                lo, hi = data["swd_ci"][method][r]
                assert lo <= data["swd"][method][r] <= hi
                assert data["bpp_error"][method][r] >= 0.0
    assert data["steps"]["cascade-lic"]["low"] == 3  # the plain sample's steps
    # the badiff methods code the same samples: the same steps, cell for cell
    assert data["steps"]["badiff"] == data["steps"][methods[1]]
    assert data["meta"]["samples"] == 2


def test_conditioning_report_measures_e_h_against_e_t() -> None:
    """benchmarks/badiff_conditioning.py: ||e(H)|| / ||e_t||, 0 for the zero-initialised
    embedding and 1 when e(H) is as loud as the mean time embedding."""
    spec = importlib.util.spec_from_file_location(
        "badiff_conditioning", ROOT / "benchmarks" / "badiff_conditioning.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    from diffstream.codecs.badiff.codec import BADiffCodec
    from diffstream.codecs.badiff.samplers import N_FULL, respaced_times
    from diffstream.codecs.badiff.stop_policy import time_embedding

    torch.manual_seed(0)
    codec = BADiffCodec.__new__(BADiffCodec)
    codec.model = BADiff(BADiffConfig()).eval()
    assert set(mod.embedding_ratio(codec).values()) == {0.0}  # fine-tuning starts silent
    m = codec.model
    with torch.no_grad():
        times = torch.tensor(respaced_times(m.ddpm.T, N_FULL))
        et = float(time_embedding(m.unet, times - 1).norm(dim=1).mean())
        last = m.embed.net[-1]
        last.weight.zero_()
        last.bias.fill_(et / math.sqrt(last.bias.numel()))  # |e(H)| = mean |e_t|
    assert all(r == pytest.approx(1.0, rel=1e-4) for r in mod.embedding_ratio(codec).values())
