"""BADiff (paper 000): conditioning path, hinge, entropy coder, stop policy, training step."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from diffstream.backbones.ddpm import DDPM, DDPMConfig
from diffstream.codecs.badiff.entropy_predictor import DELTAS, EntropyPredictor
from diffstream.codecs.badiff.logistic_coder import LogisticCoder
from diffstream.codecs.badiff.model import (
    BADiff,
    BADiffConfig,
    delta_op,
    hinge_loss,
    target_bpp,
)
from diffstream.codecs.badiff.stop_policy import (
    StopPolicy,
    mid_features,
    should_stop,
    stop_costs,
    teacher_labels,
)
from diffstream.codecs.base import CodecError
from diffstream.training.crops import CropSampler, to_uint8

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def crop() -> np.ndarray:
    return to_uint8(CropSampler().batch(1, 32, np.random.default_rng(5)))[0]


def _predictor(seed: int = 0) -> EntropyPredictor:
    torch.manual_seed(seed)
    p = EntropyPredictor().eval()
    p.entropy_bottleneck.update(force=True)
    return p


# --------------------------------------------------------------------- conditioning path
def test_entropy_embedding_reaches_every_resnet_block() -> None:
    torch.manual_seed(0)
    model = BADiff(BADiffConfig()).eval()
    torch.nn.init.normal_(model.embed.net[-1].weight, std=0.5)  # zero-init in real use
    blocks = [m for m in model.unet.modules() if hasattr(m, "time_emb_proj")]
    assert len(blocks) >= 6
    seen: dict[int, list[torch.Tensor]] = {i: [] for i in range(len(blocks))}
    hooks = [b.time_emb_proj.register_forward_hook(
        lambda _m, inp, _o, i=i: seen[i].append(inp[0].detach().clone()))
        for i, b in enumerate(blocks)]
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        model.eps(x, 500, 0.3)
        model.eps(x, 500, 1.8)
    for h in hooks:
        h.remove()
    for i, (lo, hi) in seen.items():
        assert not torch.allclose(lo, hi), f"resnet block {i} does not see H"


def test_fine_tune_starts_as_the_plain_model() -> None:
    torch.manual_seed(1)
    plain = DDPM(DDPMConfig()).eval()
    model = BADiff.from_plain(plain).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(plain.eps(x, 300), model.eps(x, 300, torch.tensor([0.2, 2.0])))


# --------------------------------------------------------------------- hinge
def test_hinge_gradient_zero_under_budget_nonzero_over(crop: np.ndarray) -> None:
    p = _predictor()
    x = torch.from_numpy(crop).permute(2, 0, 1)[None].float().requires_grad_(True)
    torch.manual_seed(0)
    h = p(x, 8.0, noise=True)["bpp"]
    hinge_loss(h, h.detach() + 1.0).backward()  # under budget
    assert x.grad is not None and float(x.grad.abs().sum()) == 0.0
    x.grad = None
    h = p(x, 8.0, noise=True)["bpp"]
    hinge_loss(h, h.detach() / 2).backward()  # over budget
    assert float(x.grad.abs().sum()) > 0.0


def test_hinge_is_relative_to_the_budget_and_weighted() -> None:
    # the same relative overshoot costs the same at 0.2 and at 2 bpp (in bpp: 10x apart)
    low = hinge_loss(torch.tensor([0.3]), torch.tensor([0.2]))
    high = hinge_loss(torch.tensor([3.0]), torch.tensor([2.0]))
    assert float(low) == pytest.approx(0.5) and float(high) == pytest.approx(0.5)
    w = hinge_loss(torch.tensor([0.3, 3.0]), torch.tensor([0.2, 2.0]), torch.tensor([1.0, 0.0]))
    assert float(w) == pytest.approx(0.25)  # weight 0 (alpha_bar ~ 0): no say


def test_hinge_gradient_reaches_the_unet_through_lic() -> None:
    from diffstream.codecs.badiff.lic_rate import LicRate

    torch.manual_seed(2)
    model = BADiff(BADiffConfig())
    x = torch.randn(2, 3, 32, 32)
    eps = model.eps(x, 10, torch.tensor([0.3, 0.3]))
    ab = model.ddpm.alpha_bar[10].float()
    x0 = model.ddpm.clip_x0((x - (1 - ab).sqrt() * eps) / ab.sqrt())
    h = LicRate()(x0, torch.tensor([0.2, 0.2]), mode="ste")
    hinge_loss(h, torch.full((2,), 1e-3), ab.expand(2)).backward()
    grads = [p.grad for p in model.unet.parameters() if p.grad is not None]
    assert grads and sum(float(g.abs().sum()) for g in grads) > 0


def test_delta_op_is_decreasing_in_budget() -> None:
    table = BADiffConfig().delta_op
    d = delta_op(torch.tensor([0.2, 0.5, 1.0, 2.0]), table)
    assert torch.all(d[1:] <= d[:-1]) and float(d[0]) > float(d[-1])
    assert target_bpp(10, (32, 32)) == 0.2 and target_bpp(10**6, (32, 32)) == 2.0


# --------------------------------------------------------------------- entropy coder
@pytest.mark.parametrize("di", [0, 12, 30, len(DELTAS) - 1])
def test_logistic_coder_round_trip_bit_exact(crop: np.ndarray, di: int) -> None:
    coder = LogisticCoder(_predictor())
    payload, rec = coder.encode(coder.analyse(crop), di)
    out = coder.decode(payload, (32, 32))
    assert np.array_equal(out, rec)
    err = np.abs(out.astype(int) - crop.astype(int)).max()
    if di == 0:
        assert err <= 1  # delta 1: lossless up to float ties (exact in practice)
    else:
        assert err <= DELTAS[di] / 2 + 1


def test_logistic_coder_fresh_instance_decodes_bit_exactly(crop: np.ndarray) -> None:
    """Decoder state never leaks from the encoder: a second coder built from the same
    weights (what the receiver process holds) decodes the same image."""
    enc = LogisticCoder(_predictor(seed=3))
    payload, rec = enc.encode(enc.analyse(crop), 7)
    assert np.array_equal(LogisticCoder(_predictor(seed=3)).decode(payload, (32, 32)), rec)


def test_logistic_coder_rejects_corrupt_payloads(crop: np.ndarray) -> None:
    coder = LogisticCoder(_predictor())
    payload, _ = coder.encode(coder.analyse(crop), 10)
    for bad in (payload[:-4], payload + b"\0\0\0\0", payload[:1] + bytes([payload[1] ^ 0x40])
                + payload[2:], b"", bytes([0xFF]) + payload[1:]):
        with pytest.raises(CodecError):
            coder.decode(bad, (32, 32))


@pytest.mark.slow  # a fresh interpreter (torch + compressai import) takes 5-15 s here
def test_logistic_coder_round_trip_across_processes(crop: np.ndarray, tmp_path: Path) -> None:
    coder = LogisticCoder(_predictor(seed=3))
    payload, rec = coder.encode(coder.analyse(crop), 5)
    (tmp_path / "p.bin").write_bytes(payload)
    script = (
        "import sys, numpy as np, torch\n"
        "torch.set_num_threads(1)\n"
        "from diffstream.codecs.badiff.logistic_coder import LogisticCoder\n"
        "from diffstream.codecs.badiff.entropy_predictor import EntropyPredictor\n"
        "torch.manual_seed(3)\n"
        "p = EntropyPredictor().eval()\n"
        "p.entropy_bottleneck.update(force=True)\n"
        "c = LogisticCoder(p)\n"
        f"out = c.decode(open(r'{tmp_path / 'p.bin'}', 'rb').read(), (32, 32))\n"
        f"np.save(r'{tmp_path / 'out.npy'}', out)\n")
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=True, timeout=120)
    assert np.array_equal(np.load(tmp_path / "out.npy"), rec)


def test_payload_bytes_match_the_estimate(crop: np.ndarray) -> None:
    """Real bytes vs H_phi: equal up to table quantisation and rANS overhead (trained
    weights), and vs the coder's own ideal length (any weights)."""
    weights = ROOT / "diffstream/codecs/badiff/weights/badiff.safetensors"
    if weights.is_file():
        from diffstream.codecs.badiff.codec import load_badiff

        model, coder = load_badiff()
        pred = model.predictor
    else:
        pred = _predictor()
        coder = LogisticCoder(pred)
    a = coder.analyse(crop)
    for di in (0, 10, 25):
        payload, _ = coder.encode(a, di)
        ideal = coder.estimate_bits(a, di)
        assert abs(8 * len(payload) - ideal) <= 0.03 * ideal + 64
        if weights.is_file():
            with torch.no_grad():
                x = torch.from_numpy(crop).permute(2, 0, 1)[None].float()
                h = float(pred(x, DELTAS[di], noise=False)["bpp"]) * 32 * 32
            assert abs(8 * len(payload) - h) <= 0.1 * h + 96, (di, 8 * len(payload), h)


# --------------------------------------------------------------------- stop policy
def test_stop_threshold_and_teacher_labels() -> None:
    assert should_stop(0.5) and should_stop(0.9) and not should_stop(0.4999)
    costs = np.array([3.0, 2.0, 1.0, 0.98, 1.2, 0.99])
    y = teacher_labels(costs, tol=0.05)
    assert y.tolist() == [0, 0, 1, 1, 1, 1]  # first step within tol of the minimum
    j = stop_costs(np.array([0.1, 0.2]), np.array([0.5, 0.9]), 0.5, beta=2.0, gamma=1.0)
    # rate 0.2 -> 0.4 of H, D 0.5 -> 0.1 of 2, compute 0.5 -> 1.0
    assert j.tolist() == pytest.approx([0.2 + 1.0 + 0.5, 0.4 + 0.2 + 1.0])
    assert j[1] < j[0]  # 0.4 of MS-SSIM is worth the extra step and the rate


def test_teacher_cost_stops_earlier_for_a_low_budget() -> None:
    """Eq. 12 with the rate term unclipped: the same run (rate and MS-SSIM rising with the
    steps, as detail appears) is stopped early at 0.2 bpp, where each step's extra detail
    costs five times its budget, and late at 2 bpp. (With min(R, H) / H, the clipped term
    of before, both budgets would stop at the same step.)"""
    n = 20
    rate, quality = np.linspace(0.1, 0.5, n), np.linspace(0.2, 0.95, n)
    tau = {h: int(np.argmax(teacher_labels(stop_costs(rate, quality, h)))) for h in (0.2, 2.0)}
    assert tau[0.2] < tau[2.0], tau
    clipped = {h: int(np.argmax(teacher_labels(stop_costs(np.full(n, h), quality, h))))
               for h in (0.2, 2.0)}  # min(R, H) / H = 1 where R >= H
    assert clipped[0.2] == clipped[2.0]


def _policy_bias(model: BADiff, stop: bool) -> None:
    last = model.policy.net[-1]
    torch.nn.init.zeros_(last.weight)
    last.bias.data = torch.tensor([0.0, 20.0] if stop else [20.0, 0.0])


def test_codec_sampler_stops_at_first_confident_step() -> None:
    from diffstream.codecs.badiff.codec import BADiffCodec
    from diffstream.codecs.base import GenerationRequest

    torch.manual_seed(4)
    codec = BADiffCodec.__new__(BADiffCodec)
    codec.model = BADiff(BADiffConfig()).eval()
    codec.coder = LogisticCoder(codec.model.predictor)
    codec.adaptive_stop, codec.threshold, codec.steps, codec._floors = True, 0.5, 8, {}
    _policy_bias(codec.model, stop=True)
    _, calls, p = codec.sample(GenerationRequest(seed=1), (32, 32), 0.5)
    assert calls == 1 and p > 0.99
    _policy_bias(codec.model, stop=False)
    _, calls, p = codec.sample(GenerationRequest(seed=1), (32, 32), 0.5)
    assert calls == 8 and p < 0.01


def test_mid_features_hook_pools_the_mid_block() -> None:
    torch.manual_seed(5)
    model = BADiff(BADiffConfig()).eval()
    with torch.no_grad(), mid_features(model.unet) as f:
        model.eps(torch.randn(3, 3, 32, 32), 100, 1.0)
    assert f.value is not None and f.value.shape == (3, model.unet.mid_block.resnets[0]
                                                      .conv2.out_channels)
    logits = StopPolicy(f.value.shape[1], 128, 128)(f.value, torch.zeros(3, 128),
                                                     torch.zeros(3, 128))
    assert logits.shape == (3, 2)


def test_stop_policy_reads_a_budget_embedding_much_smaller_than_e_t() -> None:
    """e(H) is 10-100x smaller than e_t on the shipped weights; the policy normalises each
    input, so a label that depends only on e(H)'s direction is learnt in a few hundred
    steps (unnormalised, the same training stays near chance)."""
    torch.manual_seed(7)
    gen = torch.Generator().manual_seed(7)
    pol = StopPolicy(16, 32, 32)
    opt = torch.optim.Adam(pol.parameters(), lr=1e-3)
    dirs = torch.randn(2, 32, generator=gen)
    def batch(n: int) -> tuple[torch.Tensor, ...]:
        y = torch.randint(0, 2, (n,), generator=gen)
        feat = torch.randn(n, 16, generator=gen)
        temb = 8.0 * torch.randn(n, 32, generator=gen)
        hemb = 0.01 * (dirs[y] + 0.1 * torch.randn(n, 32, generator=gen))
        return feat, temb, hemb, y
    for _ in range(300):
        feat, temb, hemb, y = batch(64)
        loss = torch.nn.functional.cross_entropy(pol(feat, temb, hemb), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    feat, temb, hemb, y = batch(512)
    acc = (pol(feat, temb, hemb).argmax(1) == y).float().mean().item()
    assert acc > 0.9, acc


def test_policy_stage_refits_only_the_policy(tmp_path: Path) -> None:
    from diffstream.codecs.badiff import train as bt
    from diffstream.training.loop import Trainer

    torch.manual_seed(8)
    BADiff(BADiffConfig()).save(tmp_path / "w")
    before = BADiff.load(tmp_path / "w")
    teacher = {"states": torch.randn(2, 4, 3, 32, 32).half(),
               "labels": torch.randint(0, 2, (2, 3, 4)).float(),
               "times": torch.tensor([1000, 600, 300, 1]), "h": torch.tensor([0.3, 1.0, 2.0])}
    args = argparse.Namespace(out=tmp_path, export=tmp_path / "w", resume=False, seed=0,
                              batch=4, variant="full", ckpt_every=100, policy_steps=3)
    model, logs = bt.refit_policy(args, (), Trainer, teacher=teacher)
    assert np.isfinite(logs["stop"]) and 0.0 <= logs["stop_acc"] <= 1.0
    for name in ("unet", "embed"):
        a, b = getattr(before, name).state_dict(), getattr(model, name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    pa, pb = before.policy.state_dict(), model.policy.state_dict()
    assert any(not torch.equal(pa[k], pb[k]) for k in pa)


# --------------------------------------------------------------------- training step
def test_training_step_smoke(tmp_path: Path) -> None:
    from diffstream.codecs.badiff import train as bt
    from diffstream.training.loop import Trainer

    torch.manual_seed(6)
    DDPM(DDPMConfig()).save(tmp_path / "w")
    args = argparse.Namespace(out=tmp_path, steps=2, resume=False, seed=0, batch=4, lr=1e-4,
                              ema=0.999, variant="full", ckpt_every=100, lambda_ent=0.1,
                              ddpm_weights=tmp_path / "w")
    rng = np.random.default_rng(0)
    bank = {"images": torch.from_numpy(rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)),
            "bpp": torch.full((8,), 1.0), "delta": torch.full((8,), 20.0),
            "table": torch.tensor([[0.3, 60.0], [1.5, 15.0]]),
            "q_op": torch.tensor([[0.2, 3.0], [2.0, 0.24]])}
    teacher = {"states": torch.randn(2, 4, 3, 32, 32).half(),
               "labels": torch.randint(0, 2, (2, 3, 4)).float(),
               "times": torch.tensor([1000, 600, 300, 1]), "h": torch.tensor([0.3, 1.0, 2.0])}
    phi = _predictor()
    from diffstream.backbones import ddpm

    ddpm._CACHE.pop((str((tmp_path / "w").resolve()), "cpu"), None)
    before = DDPM.load(tmp_path / "w").unet.state_dict()
    model, logs = bt.finetune(args, CropSampler(), phi, bank, teacher, Trainer)
    for k in ("simple", "ent", "h_lic", "grad_ratio", "rate", "cal", "stop", "total"):
        assert np.isfinite(logs[k]), k
    after = model.unet.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert any(float(p.abs().sum()) > 0 for p in model.embed.net[-1].parameters())


def test_own_teacher_runs_are_labelled_for_their_own_budget(tmp_path: Path) -> None:
    """Stage ``policy``'s teacher: the model's own runs, budgets in turn, each labelled for
    its budget only (0 before the stop, 1 from it on)."""
    from diffstream.codecs.badiff import train as bt

    torch.manual_seed(9)
    model = BADiff(BADiffConfig()).eval()
    args = argparse.Namespace(out=tmp_path, seed=0, variant="full", policy_runs=3,
                              teacher_runs=48)
    q_table = ((0.2, 3.0), (2.0, 0.24))
    data = bt.teacher_data(args, q_table, own=model)
    assert data["states"].shape[0] == 3
    assert data["run_h"].tolist() == [0, 1, 2]
    lab = data["labels"]
    for r in range(3):
        others = [k for k in range(lab.shape[1]) if k != r]
        assert float(lab[r, others].abs().sum()) == 0.0
        row = lab[r, r]
        assert row[-1] == 1.0 and bool((row[1:] >= row[:-1]).all())
    assert (tmp_path / "teacher_full.pt").is_file()


def test_own_teacher_cache_is_not_reused_for_another_model(tmp_path: Path) -> None:
    from diffstream.codecs.badiff import train as bt

    torch.manual_seed(10)
    args = argparse.Namespace(out=tmp_path, seed=0, variant="full", policy_runs=1,
                              teacher_runs=48)
    q_table = ((0.2, 3.0), (2.0, 0.24))
    a, b = BADiff(BADiffConfig()).eval(), BADiff(BADiffConfig()).eval()
    with torch.no_grad():
        for prm in b.embed.parameters():
            prm.add_(0.5)
    first = bt.teacher_data(args, q_table, own=a)
    assert bt.teacher_data(args, q_table, own=a)["fingerprint"] == first["fingerprint"]
    second = bt.teacher_data(args, q_table, own=b)
    assert second["fingerprint"] != first["fingerprint"]
    assert second["fingerprint"] == bt.model_fingerprint(b)
