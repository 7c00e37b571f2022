"""The ``diffc`` codec end to end, on a tiny randomly initialised diffusers DDPM folder
(fast, and it exercises ``DDPM.from_diffusers``) and, when present, the shipped weights."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from diffstream.backbones.ddpm import WEIGHTS_DIR
from diffstream.codecs.base import CodecError, ProgressiveCodec, capabilities_of
from diffstream.codecs.diffc.bitstream import log_count, log_symbol
from diffstream.codecs.diffc.schedule import CALIBRATION_FILE
from diffstream.codecs.registry import create_codec
from tests.unit.codecs.test_diffc_prng import digest

ROOT = Path(__file__).resolve().parents[3]
SHAPE = (16, 24)
pytestmark = pytest.mark.skipif(not CALIBRATION_FILE.is_file(),
                                reason="no shipped DiffC calibration (run "
                                       "python -m diffstream.codecs.diffc.calibrate)")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    from diffusers import DDPMScheduler, UNet2DModel

    root = tmp_path_factory.mktemp("tiny_ddpm")
    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=16, in_channels=3, out_channels=3,
                       block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=8,
                       down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"))
    unet.save_pretrained(root / "unet")
    DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear").save_pretrained(
        root / "scheduler")
    return root


OPTS = {"chunk_bits": 8, "max_steps": 5, "device": "cpu", "ddim_steps": 10}


@pytest.fixture(scope="module")
def codec(folder):
    return create_codec("diffc", diffusers=str(folder), **OPTS)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    y, x = np.mgrid[0:SHAPE[0], 0:SHAPE[1]]
    img = np.stack([(x * 9) % 256, (y * 13) % 256, ((x + y) * 5) % 256], axis=-1)
    return img.astype(np.uint8)


@pytest.fixture(scope="module")
def full(codec, image):
    enc = codec.encode(image, 1 << 20)
    return enc, codec.last_stats


def test_diffusers_folder_loads_and_roundtrips(codec, full, image):
    assert isinstance(codec, ProgressiveCodec) and capabilities_of(codec).progressive
    assert codec.model.T == 1000 and codec.model.cfg.channels == (8, 16)
    enc, stats = full
    assert not enc.skipped and enc.steps == 5 == enc.meta["steps"]
    assert enc.meta["bytes"] == len(enc.payload)
    out = codec.decode(enc.payload, enc.meta, SHAPE)
    assert out.shape == (*SHAPE, 3) and out.dtype == np.uint8
    assert codec.prefix_steps(enc.payload, enc.meta) == 5


def test_budget_is_respected_and_stops_on_a_step(codec, full, image):
    enc, stats = full
    sizes = [8 * r.payload_bytes for r in stats.steps]
    assert sizes == sorted(sizes)
    for budget in (sizes[0], (sizes[1] + sizes[-1]) // 2, sizes[-1] - 1):
        e = codec.encode(image, budget)
        j = max(k + 1 for k in range(len(sizes)) if sizes[k] <= budget)  # most steps that fit
        assert e.bits <= budget and e.steps == j and e.meta["t"] == codec.cal.schedule[j]
        assert e.payload == codec.payload_for_steps(enc.payload, enc.meta, j, SHAPE)
    skip = codec.encode(image, sizes[0] - 1)
    assert skip.skipped and skip.payload == b"" and "first DiffC step" in skip.reason
    assert codec.encode(image, 10).skipped


def test_prefixes_decode_whole_steps(codec, full):
    enc, _ = full
    traj = codec.trajectory(enc.payload, enc.meta, SHAPE)
    prev = 0
    for cut in range(len(enc.payload) + 1):
        prefix = enc.payload[:cut]
        n = codec.prefix_steps(prefix, enc.meta)
        assert n >= prev
        prev = n
        if n == 0:
            if cut >= 1:
                with pytest.raises(CodecError, match="no complete step"):
                    codec.decode(prefix, enc.meta, SHAPE)
            continue
        if cut % 4 == 1 or cut == len(enc.payload):  # decode a sample of the prefixes
            sub = codec.trajectory(prefix, enc.meta, SHAPE)
            assert len(sub) == n
            assert torch.equal(sub[-1][1], traj[n - 1][1])  # the same x_t, bit for bit
            assert codec.decode(prefix, enc.meta, SHAPE).shape == (*SHAPE, 3)
    assert prev == 5


def test_bad_payloads_raise_codec_error(codec, full):
    enc, _ = full
    p = enc.payload
    cases = {
        "empty": (b"", enc.meta),
        "longer than meta": (p + b"\x00\x00\x00\x00", enc.meta),
        "no steps in meta": (p, {"bytes": len(p)}),
        "steps not an int": (p, {**enc.meta, "steps": "5"}),
        "too many steps": (p, {**enc.meta, "steps": 999}),
        "check byte": (bytes([p[0] ^ 0x01]) + p[1:], enc.meta),
    }
    for what, (bad, meta) in cases.items():
        with pytest.raises(CodecError):
            codec.decode(bad, meta, SHAPE)
            pytest.fail(f"{what} was accepted")
    with pytest.raises(CodecError, match="multiples of 8"):
        codec.decode(p, enc.meta, (15, 24))
    caught = 0
    for pos in range(1, len(p)):  # bit flips in the stream: canonical + x_t check catch most
        try:
            codec.decode(p[:pos] + bytes([p[pos] ^ 0x10]) + p[pos + 1:], enc.meta, SHAPE)
        except CodecError:
            caught += 1
    assert caught >= 0.9 * (len(p) - 1)
    rng = np.random.default_rng(0)
    for _ in range(100):  # hostile bytes: CodecError or an image, never anything else
        junk = p[:1] + rng.bytes(int(rng.integers(0, 60)))
        for meta in ({**enc.meta, "bytes": len(junk)}, {**enc.meta, "bytes": 1 << 20}):
            try:
                codec.decode(junk, meta, SHAPE)
            except CodecError:
                pass


def test_payload_has_no_header_fields(codec, full, image):
    """Shape and step count come from the wire header (the decoder's ``shape``, ``meta``):
    the payload is one check byte and the stream, whose flush is at most 2 bytes."""
    enc, stats = full
    assert set(enc.meta) == {"steps", "t", "bytes", "id"}  # id: this codec's first frame
    steps = list(zip([r.ratio for r in stats.steps], stats.indices, strict=True))
    stream = codec.coder.encode(steps[:enc.steps])
    assert enc.payload[1:] == stream  # exactly one fixed byte: the x_t check
    assert 8 * len(stream) <= codec.coder.ideal_bits(steps[:enc.steps]) + 16
    later = codec.encode(image, 1 << 20)
    assert "id" not in later.meta  # the identity rides on the first frame (and every 64th)
    assert later.payload == enc.payload


def test_mismatched_weights_are_a_clear_error(folder, full, tmp_path):
    """A receiver with other weights refuses the stream by its identity, naming what
    differs; without the identity its x_t check catches it."""
    from diffusers import UNet2DModel

    enc, _ = full
    other = tmp_path / "other"
    import shutil

    shutil.copytree(folder, other)
    unet = UNet2DModel.from_pretrained(other / "unet")
    with torch.no_grad():
        next(iter(unet.parameters())).add_(1e-3)
    unet.save_pretrained(other / "unet")
    rx = create_codec("diffc", diffusers=str(other), **OPTS)
    with pytest.raises(CodecError, match="model weights"):
        rx.decode(enc.payload, enc.meta, SHAPE)
    bare = {k: v for k, v in enc.meta.items() if k != "id"}
    with pytest.raises(CodecError, match="x_t check"):
        rx.decode(enc.payload, bare, SHAPE)
    other_cal = create_codec("diffc", diffusers=str(folder), **{**OPTS, "seed": 3})
    with pytest.raises(CodecError, match="seed"):
        other_cal.prefix_steps(enc.payload, enc.meta)


def test_drift_is_a_decode_error(codec, full, monkeypatch):
    """Float drift between the ends (simulated: the decoder's U-Net output moves by one
    ulp-scale step) is caught by the x_t check, not shown as a silently wrong image."""
    enc, _ = full
    assert codec.decode(enc.payload, enc.meta, SHAPE).shape == (*SHAPE, 3)
    real = codec.model.eps

    def drifted(x, t):
        return real(x, t) * (1 + 1e-6)

    monkeypatch.setattr(codec.model, "eps", drifted)
    with pytest.raises(CodecError, match="x_t check failed"):
        codec.decode(enc.payload, enc.meta, SHAPE)
    # a prefix (fewer steps than meta says) cannot be checked, and still decodes
    assert codec.prefix_steps(enc.payload[:len(enc.payload) // 2], enc.meta) < enc.steps


def test_denoisers(folder, full):
    enc, _ = full
    outs = {}
    for d in ("flow", "ancestral", "mse"):
        c = create_codec("diffc", diffusers=str(folder), denoiser=d, **OPTS)
        outs[d] = c.decode(enc.payload, enc.meta, SHAPE)
        assert np.array_equal(outs[d], c.decode(enc.payload, enc.meta, SHAPE))
    assert not np.array_equal(outs["flow"], outs["ancestral"])
    with pytest.raises(ValueError, match="denoiser"):
        create_codec("diffc", diffusers=str(folder), denoiser="nope", **OPTS)


DECODER = """
import json, sys, torch
from diffstream.codecs.registry import create_codec
from tests.unit.codecs.test_diffc_prng import digest
torch.set_num_threads(int(sys.argv[3]))
opts = json.loads(sys.argv[1])
c = create_codec("diffc", **opts)
payload = open(sys.argv[2], "rb").read()
traj = c.trajectory(payload, json.loads(sys.argv[4]), (16, 24))
torch.save(traj[-1][1], sys.argv[2] + ".xt")
print(digest())
"""


def test_cross_process_exact(folder, full, tmp_path):
    """Encode here, decode in a fresh process (4 torch threads there, one here: the codec
    pins one thread itself): x_t is reproduced bit for bit."""
    enc, stats = full
    f = tmp_path / "payload.bin"
    f.write_bytes(enc.payload)
    opts = {"diffusers": str(folder), **OPTS}
    out = subprocess.run([sys.executable, "-c", DECODER, json.dumps(opts), str(f), "4",
                          json.dumps(enc.meta)],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == digest()  # shared candidates agree
    x_other = torch.load(str(f) + ".xt", weights_only=True)
    assert stats.x_t is not None and torch.equal(x_other, stats.x_t)


def test_min_bits_and_registry(codec):
    floor = codec.min_bits(SHAPE)
    assert 8 * 2 <= floor < 8 * 400
    assert codec.min_bits(SHAPE) == floor
    with pytest.raises(ValueError, match="chunk_bits"):
        create_codec("diffc", diffusers=str(codec_folder_of(codec)), chunk_bits=9)


def codec_folder_of(codec) -> str:
    return codec.model.cfg.training["source"]


@pytest.mark.skipif(not (WEIGHTS_DIR / "ddpm.safetensors").is_file(),
                    reason="no trained DDPM weights (python -m diffstream.training ddpm)")
def test_shipped_weights_compress_a_photo_crop():
    from diffstream.metrics.quality import psnr
    from diffstream.training.crops import CropSampler, to_uint8

    c = create_codec("diffc", device="cpu")
    img = to_uint8(CropSampler().batch(1, 32, np.random.default_rng(123)))[0]
    enc = c.encode(img, 2048)
    assert not enc.skipped and enc.bits <= 2048 and enc.steps >= 3
    out = c.decode(enc.payload, enc.meta, (32, 32))
    kl = sum(r.kl_bits for r in c.last_stats.steps[:enc.steps])
    assert enc.bits < 2.0 * kl + 200  # real bytes near the ideal RCC cost
    assert psnr(img, out) > 18


def test_receiver_shows_the_prefix_that_beat_the_deadline(folder, tmp_path):
    """A DiffC frame cut off by its deadline: the receiver decodes the steps that arrived
    and logs which step it reached (the simulator's ReceiverWorker, real DiffC bytes)."""
    from diffstream.scenario.load import load_scenario
    from diffstream.sim.workers import ReceiverWorker
    from diffstream.transport.packets import packetize
    from diffstream.transport.wire import FrameHeader, arm_tag, pack_frame
    from tests.conftest import tiny_scenario

    sc, spath = load_scenario(tiny_scenario(tmp_path, frame={"width": 24, "height": 16,
                                                             "fps": 10}))
    rx = ReceiverWorker(sc, str(spath.parent))
    opts = {**OPTS, "max_steps": 25}
    rx.on_arm({"arm": "d", "codec": "diffc", "options": {"diffusers": str(folder), **opts}})
    enc = rx.codec.encode(rx.content.frame(0), 1 << 20)
    h = FrameHeader(seq=0, arm=arm_tag("d"), codec="diffc", budget_bits=1 << 20, capture_s=0.0,
                    send_s=0.0, shape=rx.shape, steps=enc.steps, meta=enc.meta)
    frame = pack_frame(h, enc.payload)
    header_len = len(frame) - len(enc.payload)
    # 20-byte packets: the header and the first half of the payload arrive in time
    cut = header_len + len(enc.payload) // 2
    chunks = [[o, d, 0.05 if o + len(d) <= cut else 5.0] for o, d in packetize(frame, 60)]
    (res,) = rx.on_frame({"op": "frame", "arm": "d", "seq": 0, "frame_len": len(frame),
                          "chunks": chunks, "capture_s": 0.0, "deadline_s": 0.3})
    assert res["decoded"] and res["partial"] and not res["error"], res
    assert 0 < res["prefix_step"] < enc.steps
    assert res["psnr_db"] is not None


def test_image_chunking_follows_this_images_kl(codec, full):
    """Per-image provisioning: each step's chunk count is ceil(KL / chunk_kl) to within
    one 2^(1/8) count step, from this image's KL, so no chunk is planned above its target
    (the table plan's under-provisioning); the counts travel in the stream."""
    _, stats = full
    assert codec.mode == "image"
    for rec in stats.steps:
        need = max(1, math.ceil(rec.kl_bits / codec.chunk_kl - 1e-9))
        dims = 3 * SHAPE[0] * SHAPE[1]
        assert rec.chunks == min(log_count(log_symbol(rec.kl_bits, codec.chunk_kl)), dims)
        assert need <= rec.chunks <= max(need * 2 ** (1 / 8) + 1, 1) or rec.chunks == dims
    table = create_codec("diffc", diffusers=str(codec_folder_of(codec)), chunking="table",
                         **OPTS)
    planned = [table.chunks_of(3 * SHAPE[0] * SHAPE[1])(k, None)
               for k in range(len(stats.steps))]
    assert planned != [r.chunks for r in stats.steps]  # not the table's plan
