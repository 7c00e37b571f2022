"""Training and calibration on pretrained diffusers folders, a few steps each, in process:
``python -m diffstream.training gic --vae``, ``... badiff --ldm`` and ``python -m
diffstream.codecs.diffc.calibrate --model``; then the codecs load what they wrote."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from diffstream.codecs.diffc.schedule import CALIBRATION_FILE
from diffstream.codecs.registry import create_codec
from diffstream.content.sources import load_photo
from tests.support.tiny_diffusers import save_ldm


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def ldm(tmp_path_factory) -> Path:
    return save_ldm(tmp_path_factory.mktemp("train") / "ldm")


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    for name in ("astronaut", "coffee", "chelsea"):
        load_photo(name).resize((160, 128)).save(folder / f"{name}.png")
    return folder


@pytest.mark.slow  # ~10 s on a loaded 2-core machine (three stages, the VAE encodes)
def test_gic_trains_on_a_frozen_vae_and_the_codec_loads_it(ldm, images, tmp_path):
    from diffstream.training.__main__ import main

    out = tmp_path / "gic"
    assert main(["gic", "--vae", str(ldm / "vae"), "--images", str(images), "--steps", "3",
                 "--bank", "24", "--stat-batches", "1", "--batch", "4", "--ckpt-every", "3",
                 "--out", str(out), "--device", "cpu"]) == 0
    cfg = json.loads((out / "gic.json").read_text())
    assert cfg["autoencoder"] == "diffusers" and cfg["stages"] == ["ae", "entropy", "reverse"]
    assert cfg["vae"]["class"] == "AutoencoderKL" and cfg["vae"]["factor"] == 4
    with safe_open(str(out / "gic.safetensors"), "pt") as f:
        keys = set(f.keys())
        std = f.get_tensor("ae.latent_std")
    assert {k for k in keys if k.startswith("ae.")} == {"ae.latent_mean", "ae.latent_std"}
    assert not any(".vae." in k for k in keys)  # the VAE itself is never copied
    assert std.shape == (4,) and bool((std > 0).all())
    codec = create_codec("gic", vae=str(ldm), weights=str(out), device="cpu")
    img = np.array(load_photo("coffee").resize((64, 64)))
    enc = codec.encode(img, 12_000)
    assert not enc.skipped and enc.bits <= 12_000
    assert codec.decode(enc.payload, enc.meta, (64, 64)).shape == (64, 64, 3)


@pytest.mark.slow  # ~40-90 s: the teacher stage runs the 100-step sampler and H_phi
def test_badiff_trains_on_a_latent_model_and_the_codec_loads_it(ldm, tmp_path):
    from diffstream.codecs.base import GenerationRequest
    from diffstream.training.__main__ import main

    out = tmp_path / "badiff"
    assert main(["badiff", "--ldm", str(ldm), "--out", str(out), "--steps", "2",
                 "--phi-steps", "2", "--lic-bank", "40", "--teacher-runs", "1",
                 "--policy-runs", "1", "--policy-steps", "2",
                 "--batch", "4", "--ckpt-every", "2"]) == 0
    cfg = json.loads((out / "badiff.json").read_text())
    assert cfg["backbone"]["kind"] == "latent" and cfg["backbone"]["source"] == str(ldm)
    assert cfg["training"]["policy_refit"]["runs"] == 1  # stage policy, on the LDM's own run
    teacher = torch.load(out / "teacher.pt", weights_only=True)
    assert teacher["states"].shape[2:] == (4, 8, 8)  # latent states of 32x32 images
    codec = create_codec("badiff", ldm=str(ldm), weights=str(out), steps=4, device="cpu")
    enc = codec.generate(GenerationRequest(seed=2), 12_000, (32, 32))
    assert enc.skipped or enc.bits <= 12_000


@pytest.mark.slow  # ~10-20 s: 1000 U-Net calls per calibration crop
@pytest.mark.skipif(not CALIBRATION_FILE.is_file(), reason="no shipped DiffC calibration")
def test_diffc_calibrates_a_latent_model_into_its_folder(ldm):
    from diffstream.codecs.diffc.calibrate import main

    assert main(["--model", str(ldm), "--images", "2", "--run-images", "1",
                 "--chunk-bits", "8", "--chunk-samples", "50", "--batch", "250"]) == 0
    cal = json.loads((ldm / "diffc_calibration.json").read_text())
    assert cal["T"] == 1000 and cal["info"]["source"] == f"model:{ldm}"
    codec = create_codec("diffc", model=str(ldm), chunk_bits=8, max_steps=3, device="cpu",
                         ddim_steps=5)
    assert codec.cal.schedule == cal["schedule"]  # found in the model's folder
    img = np.array(load_photo("coffee").resize((32, 32)))
    enc = codec.encode(img, 1 << 14)
    assert enc.steps == 3 and codec.decode(enc.payload, enc.meta, (32, 32)).shape == (32, 32, 3)
