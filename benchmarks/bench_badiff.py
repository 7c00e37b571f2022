"""BADiff (paper 000) against its baselines, the paper's way (issue 16, items 2 and 4).

    python benchmarks/bench_badiff.py [--samples 256] [--real-images ../shared/datasets/kodak]
        [--methods badiff,badiff.coder=lic,...] [--json runs/bench_badiff.json]

Per method x budget regime (low 0.2-0.5, med 0.5-1.0, high 1.0-2.0 bpp), ``--samples`` N
requests (seeds seed0 .. seed0+N-1, the same for every method and regime), each at a
target drawn uniformly in the regime (seeded; the same targets for every method: matched
budgets). What is measured, per cell:

- ``swd``: the sliced Wasserstein distance (x1e3, ``metrics.realism``) of the decoded
  images of the sent frames against N real crops of the same size (``--real-images``),
  with a 95 % bootstrap interval: the stand-in for Table 1's FID (distribution realism, no
  learnt weights). ``swd_floor``: the same distance between a second, disjoint set of real
  crops, as many as the method sent, and the same N real crops: what a perfect generator
  scores at that sample size.
- ``msssim``: paired MS-SSIM (2 scales at 32 px) of each decoded image against the same
  model's uncoded full-step output of the same seed (and, for BADiff, the same H): the
  stand-in for LPIPS, whose only defined reference in the paper (Eq. 12) is that output.
  BADiff's is its own conditioned 100-step run (``BADiffCodec.sample_with_full``: one pass,
  the stop recorded and sampling continued); every baseline's is the plain DDPM's
  100-step sample (``reference_image``).
- ``bpp_error``: mean |payload bpp - target bpp| over the SENT frames only; ``skip_rate``:
  the share of frames the codec skipped (no payload), separately. A skip never enters
  ``bpp_error`` or the image metrics.
- ``steps``: mean U-Net calls (Table 2); ``gen_ms`` / ``dec_ms``: wall time of the
  codec's ``generate`` / ``decode`` on one torch thread.

Methods are named as the codecs are, options after a dot as ``diffstream evaluate``
writes them: ``badiff`` (the codec's defaults), ``badiff.coder=own`` / ``badiff.coder=lic``
(which coder codes the generated image; every ``badiff*`` method codes the same sampled
images), ``cascade-lic``, ``earlystop-lic``, ``dpmsolver-lic`` (the DPM-Solver 20 steps +
LIC compute-matched baseline), ``cascade-lic.steps=matched`` (the DDPM's ancestral sampler
at BADiff's mean step count of that regime, then LIC: ``cascade`` with ``generator: full,
codec: lic, steps: K``), and any other registered generative codec (``cascade-jpeg``, ...).

Shortcuts that change no result, only the CPU time (each says why):
- ``badiff*``: one sampling pass per request gives the stopped image and the full-step
  output; its ``gen_ms`` is the real ``generate`` call on the first ``--latency-samples``
  requests of each cell, whose payload is compared with the one benchmarked (the count of
  differences is ``meta.generate_mismatches``: a rate control carried across frames may
  settle on a neighbouring step).
- ``cascade-lic`` (the full 100-step sampler): the sample is the plain reference, computed
  once per seed; the payload is its inner LIC's ``encode`` at the budget, exactly what
  ``generate`` does after sampling; ``gen_ms`` as for BADiff.

The Table 3 ablations are runs of this bench on each ablation's weights (``--weights DIR
--model badiff_<variant> --methods badiff``), compared by ``badiff_ablations.py``.
Not measured here: FID/LPIPS (no weights on disk).
Progress goes to stderr, the tables to stdout, everything to ``--json``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from diffstream.codecs import create_codec  # noqa: E402
from diffstream.codecs.badiff.codec import CODERS, DEFAULT_CODER, BADiffCodec  # noqa: E402
from diffstream.codecs.badiff.model import target_bpp  # noqa: E402
from diffstream.codecs.badiff.samplers import N_FULL, ddpm_sample, load_plain_ddpm  # noqa: E402
from diffstream.codecs.base import Encoded, GenerationRequest  # noqa: E402
from diffstream.codecs.gic.bitstream import one_thread  # noqa: E402
from diffstream.errors import InputError  # noqa: E402
from diffstream.evaluate.images import load_folder, seeded_crops  # noqa: E402
from diffstream.metrics.quality import ms_ssim  # noqa: E402
from diffstream.metrics.realism import sliced_wasserstein  # noqa: E402
from diffstream.training.crops import to_uint8  # noqa: E402

SIZE = 32
REGIMES: dict[str, tuple[float, float]] = {"low": (0.2, 0.5), "med": (0.5, 1.0),
                                           "high": (1.0, 2.0)}
MATCHED = "cascade-lic.steps=matched"
OTHER_CODER = next(c for c in CODERS if c != DEFAULT_CODER)
DEFAULT_METHODS = ("badiff", f"badiff.coder={OTHER_CODER}", "cascade-lic", "earlystop-lic",
                   "dpmsolver-lic", MATCHED)
DEFAULT_REAL = ROOT.parent / "shared" / "datasets" / "kodak"
# shortcut methods: timed generate() calls whose payload differed from the benchmarked one
# (a rate control that carries state across frames may pick another step; reported)
MISMATCH: dict[str, int] = {}


@dataclass
class Frame:
    """One request of one method at one regime."""

    target: float  # bpp
    sent: bool
    bits: int
    steps: int
    decoded: np.ndarray | None  # the receiver's image (None: skipped)
    full: np.ndarray  # the same model's uncoded full-step output (paired MS-SSIM)
    gen_ms: float = math.nan
    dec_ms: float = math.nan


# --- inputs ------------------------------------------------------------------------------


def targets(seed: int, samples: int) -> dict[str, np.ndarray]:
    """Per regime, each request's target bpp: uniform in the regime, seeded, shared by all
    methods."""
    rng = np.random.default_rng([seed, 16])
    return {r: rng.uniform(lo, hi, samples) for r, (lo, hi) in REGIMES.items()}


def real_sets(folder: Path, samples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint sets of ``samples`` seeded SIZE x SIZE crops of the real images: A, the
    comparison set, and B, for the real-vs-real floor. InputError when unusable."""
    images = load_folder(folder)
    per_image = math.ceil(2 * samples / len(images))
    crops = seeded_crops(images, SIZE, per_image, seed, folder)
    order = np.random.default_rng([seed, 3]).permutation(len(crops))
    pix = np.stack([crops[i].pixels for i in order[: 2 * samples]])
    return pix[:samples], pix[samples: 2 * samples]


def parse_method(spec: str) -> tuple[str, dict[str, Any]]:
    """``name.opt=value,opt=value`` -> (codec name, options); values read as JSON if they
    parse, else strings (``diffstream evaluate``'s --codec-options pairs)."""
    name, _, rest = spec.partition(".")
    options: dict[str, Any] = {}
    for pair in filter(None, rest.split(",")):
        key, eq, value = pair.partition("=")
        if not eq:
            raise ValueError(f"method {spec!r}: option {pair!r} is not KEY=VALUE")
        try:
            options[key] = json.loads(value)
        except ValueError:
            options[key] = value
    return name, options


# --- running the methods -----------------------------------------------------------------


class Progress:
    """Plain progress lines on stderr: frames done, elapsed, ETA."""

    def __init__(self, total: int, quiet: bool = False) -> None:
        self.total, self.done, self.quiet = total, 0, quiet
        self.t0 = time.monotonic()
        self._last = 0.0

    def step(self, label: str, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if self.quiet or (now - self._last < 10 and self.done < self.total):
            return
        self._last = now
        el = now - self.t0
        eta = el / max(self.done, 1) * (self.total - self.done)
        print(f"[bench_badiff] {self.done}/{self.total} frames ({label}) {el:.0f}s elapsed, "
              f"ETA {eta:.0f}s", file=sys.stderr, flush=True)


def _decode(codec: Any, enc: Encoded) -> tuple[np.ndarray | None, float]:
    if enc.skipped:
        return None, math.nan
    t0 = time.perf_counter()
    img = codec.decode(enc.payload, enc.meta, (SIZE, SIZE))
    return img, 1000 * (time.perf_counter() - t0)


def _frame(codec: Any, enc: Encoded, budget: int, target: float, full: np.ndarray,
           gen_ms: float = math.nan) -> Frame:
    if not enc.skipped and enc.bits > budget:
        raise AssertionError(f"{codec.name}: {enc.bits} bits over the budget {budget}")
    img, dec_ms = _decode(codec, enc)
    return Frame(target, not enc.skipped, 0 if enc.skipped else enc.bits, int(enc.steps),
                 img, full, gen_ms, dec_ms)


def _timed_generate(codec: Any, seed: int, budget: int) -> tuple[Encoded, float]:
    t0 = time.perf_counter()
    enc = codec.generate(GenerationRequest(seed=seed), budget, (SIZE, SIZE))
    return enc, 1000 * (time.perf_counter() - t0)


def run_badiff(codecs: dict[str, BADiffCodec], seeds: Sequence[int],
               plan: dict[str, np.ndarray], latency: int, progress: Progress
               ) -> dict[str, dict[str, list[Frame]]]:
    """Every ``badiff*`` method on the same sampled images (one pass per request)."""
    pixels = SIZE * SIZE
    first = next(iter(codecs.values()))
    out: dict[str, dict[str, list[Frame]]] = {m: {r: [] for r in plan} for m in codecs}
    for regime, tgts in plan.items():
        for k, (seed, tgt) in enumerate(zip(seeds, tgts, strict=True)):
            budget = int(round(tgt * pixels))
            h = target_bpp(budget, (SIZE, SIZE))
            image, calls, p, full = first.sample_with_full(GenerationRequest(seed=seed),
                                                           (SIZE, SIZE), h)
            for name, codec in codecs.items():
                enc = codec.code_generated(image, budget, h, calls, p)
                gen_ms = math.nan
                if k < latency:  # the real call, and a check of the shortcut
                    real, gen_ms = _timed_generate(codec, seed, budget)
                    MISMATCH[name] = MISMATCH.get(name, 0) + int(
                        real.payload != enc.payload or real.steps != enc.steps)
                out[name][regime].append(_frame(codec, enc, budget, tgt, full, gen_ms))
            progress.step(f"badiff {regime}", len(codecs))
    return out


def run_codec(name: str, codec: Any, seeds: Sequence[int], plan: dict[str, np.ndarray],
              refs: Callable[[int], np.ndarray], latency: int, progress: Progress,
              ref_steps: int = N_FULL) -> dict[str, list[Frame]]:
    """A baseline codec through its ``generate``; ``cascade-lic`` (the full sampler) on the
    cached reference (see the module notes)."""
    pixels = SIZE * SIZE
    cached = getattr(codec, "generator", None) == "full" and getattr(codec, "steps",
                                                                      N_FULL) == N_FULL
    out: dict[str, list[Frame]] = {}
    for regime, tgts in plan.items():
        frames = []
        for k, (seed, tgt) in enumerate(zip(seeds, tgts, strict=True)):
            budget = int(round(tgt * pixels))
            gen_ms = math.nan
            if cached:
                enc = codec.inner.encode(refs(seed), budget)
                enc.steps = ref_steps  # the U-Net calls of the sample it codes
                if k < latency:
                    real, gen_ms = _timed_generate(codec, seed, budget)
                    MISMATCH[name] = MISMATCH.get(name, 0) + int(real.payload != enc.payload)
            else:
                enc, gen_ms = _timed_generate(codec, seed, budget)
            frames.append(_frame(codec, enc, budget, tgt, refs(seed), gen_ms))
            progress.step(f"{name} {regime}")
        out[regime] = frames
    return out


# --- summarising -------------------------------------------------------------------------


def _boot_mean(values: np.ndarray, seed: int, resamples: int) -> tuple[float, float, float]:
    """(mean, 2.5 %, 97.5 %) of a percentile bootstrap of the mean; NaN when empty."""
    if len(values) == 0:
        return math.nan, math.nan, math.nan
    mean = float(values.mean())
    if resamples <= 0 or len(values) < 2:
        return mean, mean, mean
    rng = np.random.default_rng([seed, 5])
    idx = rng.integers(0, len(values), size=(resamples, len(values)))
    lo, hi = np.percentile(values[idx].mean(axis=1), [2.5, 97.5])
    return mean, float(lo), float(hi)


def summarise(frames: dict[str, dict[str, list[Frame]]], real_a: np.ndarray,
              real_b: np.ndarray, seed: int = 0, bootstrap: int = 100
              ) -> dict[str, dict[str, dict[str, Any]]]:
    """metric -> method -> regime -> value (``*_ci``: [low, high]); see the module notes.

    Skipped frames count in ``skip_rate`` and ``steps`` only."""
    keys = ("swd", "swd_ci", "swd_floor", "swd_floor_ci", "msssim", "msssim_ci", "bpp_error",
            "bpp_error_ci", "bpp", "skip_rate", "steps", "gen_ms", "dec_ms", "n", "n_sent")
    out: dict[str, dict[str, dict[str, Any]]] = {k: {} for k in keys}
    pixels = SIZE * SIZE
    for method, cells in frames.items():
        for regime, fs in cells.items():
            sent = [f for f in fs if f.sent]
            put = {k: out[k].setdefault(method, {}) for k in keys}
            put["n"][regime], put["n_sent"][regime] = len(fs), len(sent)
            put["skip_rate"][regime] = 1.0 - len(sent) / len(fs)
            put["steps"][regime] = float(np.mean([f.steps for f in fs]))
            put["gen_ms"][regime] = float(np.nanmean([f.gen_ms for f in fs])) if any(
                not math.isnan(f.gen_ms) for f in fs) else math.nan
            err = np.array([abs(f.bits / pixels - f.target) for f in sent])
            mean, lo, hi = _boot_mean(err, seed, bootstrap)
            put["bpp_error"][regime], put["bpp_error_ci"][regime] = mean, [lo, hi]
            put["bpp"][regime] = float(np.mean([f.bits / pixels for f in sent])) if sent \
                else math.nan
            if not sent:
                for k in ("swd", "swd_floor", "msssim", "dec_ms"):
                    put[k][regime] = math.nan
                    if k != "dec_ms":
                        put[k + "_ci"][regime] = [math.nan, math.nan]
                continue
            put["dec_ms"][regime] = float(np.mean([f.dec_ms for f in sent]))
            ms = np.array([ms_ssim(f.full, f.decoded) for f in sent])
            mean, lo, hi = _boot_mean(ms, seed, bootstrap)
            put["msssim"][regime], put["msssim_ci"][regime] = mean, [lo, hi]
            imgs = np.stack([f.decoded for f in sent])
            s = sliced_wasserstein(imgs, real_a, seed=seed, bootstrap=bootstrap)
            put["swd"][regime], put["swd_ci"][regime] = s.value, [s.ci_low, s.ci_high]
            fl = sliced_wasserstein(real_b[: len(sent)], real_a, seed=seed, bootstrap=bootstrap)
            put["swd_floor"][regime], put["swd_floor_ci"][regime] = fl.value, [fl.ci_low,
                                                                               fl.ci_high]
    return out


def _clean(x: Any) -> Any:
    """NaN -> None, so the JSON file is standard JSON."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def table(title: str, summary: dict[str, Any], key: str, fmt: str) -> str:
    ci = summary.get(key + "_ci")
    lines = [f"\n{title}", "| method | low | med | high |", "|---|---|---|---|"]
    for method, cells in summary[key].items():
        row = []
        for r in REGIMES:
            v = cells.get(r, math.nan)
            cell = "-" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v)
            if ci is not None and cell != "-":
                lo, hi = ci[method][r]
                cell += f" [{fmt.format(lo)}, {fmt.format(hi)}]"
            row.append(cell)
        lines.append(f"| {method} | " + " | ".join(row) + " |")
    return "\n".join(lines)


# --- main --------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--real-images", type=Path, default=DEFAULT_REAL,
                   help="folder of real images for the SWD (default ../shared/datasets/kodak)")
    p.add_argument("--samples", type=int, default=256, help="requests per method x regime")
    p.add_argument("--seed0", type=int, default=1000, help="first request seed")
    p.add_argument("--seed", type=int, default=0, help="targets, crops, SWD and bootstrap")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                   help="comma-separated methods (default: %(default)s)")
    p.add_argument("--weights", default=None, help="BADiff weights folder (default: shipped)")
    p.add_argument("--model", default="badiff", help="BADiff weights name in --weights")
    p.add_argument("--full-steps", type=int, default=N_FULL,
                   help="the full sampler's steps for BADiff and the references "
                        "(%(default)s; fewer only for quick tests)")
    p.add_argument("--latency-samples", type=int, default=8,
                   help="real generate() calls per cell timed for the shortcut methods")
    p.add_argument("--bootstrap", type=int, default=100, help="bootstrap resamples (CIs)")
    p.add_argument("--json", type=Path, default=ROOT / "runs" / "bench_badiff.json")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


def _methods(spec: str) -> list[str]:
    methods = [m.strip() for m in spec.split(",") if m.strip()]
    if not methods:
        raise ValueError("--methods is empty")
    if len(set(methods)) != len(methods):
        raise ValueError(f"--methods lists a method twice: {spec}")
    return methods


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(1)
    t_all = time.time()
    try:  # every input check before the first sample
        if args.samples < 1:
            raise ValueError(f"--samples must be >= 1, got {args.samples}")
        if not 1 <= args.full_steps <= N_FULL:
            raise ValueError(f"--full-steps must be in 1..{N_FULL}, got {args.full_steps}")
        methods = _methods(args.methods)
        real_a, real_b = real_sets(args.real_images, args.samples, args.seed)
        badiffs: dict[str, BADiffCodec] = {}
        others: dict[str, Any] = {}
        for m in methods:
            if m == MATCHED:
                continue
            name, options = parse_method(m)
            if name == "badiff":
                options = {"weights": args.weights, "model": args.model,
                           "steps": args.full_steps, **options}
            codec = create_codec(name, **options)
            if name == "badiff":
                badiffs[m] = codec
            elif not hasattr(codec, "generate"):
                raise ValueError(f"method {m!r}: {name} is not a generative codec")
            else:
                others[m] = codec
        if MATCHED in methods and not badiffs:
            raise ValueError(f"{MATCHED} needs a badiff method (its mean step count)")
    except (InputError, ValueError, TypeError) as exc:
        print(f"bench_badiff: error: {exc}", file=sys.stderr)
        return 2

    seeds = list(range(args.seed0, args.seed0 + args.samples))
    plan = targets(args.seed, args.samples)
    progress = Progress(len(methods) * len(REGIMES) * args.samples, args.quiet)
    ref_cache: dict[int, np.ndarray] = {}

    def refs(seed: int) -> np.ndarray:  # the plain DDPM's full-step sample, once per seed
        if seed not in ref_cache:
            with torch.no_grad(), one_thread():
                x0, _ = ddpm_sample(load_plain_ddpm(), seed, (SIZE, SIZE), args.full_steps)
            ref_cache[seed] = to_uint8(x0)[0]
        return ref_cache[seed]

    frames: dict[str, dict[str, list[Frame]]] = {}
    if badiffs:
        frames.update(run_badiff(badiffs, seeds, plan, args.latency_samples, progress))
    for m, codec in others.items():
        frames[m] = run_codec(m, codec, seeds, plan, refs, args.latency_samples, progress,
                              args.full_steps)
    if MATCHED in methods:  # the DDPM at BADiff's mean step count of each regime, then LIC
        first = frames[next(iter(badiffs))]
        cells: dict[str, list[Frame]] = {}
        for regime in REGIMES:
            k = max(1, round(float(np.mean([f.steps for f in first[regime]]))))
            codec = create_codec("cascade", generator="full", codec="lic", steps=k)
            cells.update(run_codec(MATCHED, codec, seeds, {regime: plan[regime]}, refs,
                                   args.latency_samples, progress))
        frames[MATCHED] = cells
    frames = {m: frames[m] for m in methods}
    t_sum = time.time()
    summary = summarise(frames, real_a, real_b, args.seed, args.bootstrap)
    record = {
        **summary,
        "meta": {"command": "python benchmarks/bench_badiff.py " + " ".join(
                     sys.argv[1:] if argv is None else argv),
                 "samples": args.samples, "full_steps": args.full_steps,
                 "seeds": [seeds[0], seeds[-1]],
                 "regimes": REGIMES, "size": SIZE, "real_images": str(args.real_images),
                 "default_coder": DEFAULT_CODER, "bootstrap": args.bootstrap,
                 "latency_samples": args.latency_samples,
                 "generate_mismatches": dict(MISMATCH),
                 "summary_s": time.time() - t_sum, "wall_s": time.time() - t_all,
                 "torch_threads": torch.get_num_threads()},
    }
    print(f"BADiff benchmark, {SIZE}x{SIZE}, N = {args.samples} requests per cell, one torch "
          f"thread, real crops from {args.real_images}; [95 % bootstrap CI]")
    print(table("SWD x1e3 to real crops (lower is better)", summary, "swd", "{:.1f}"))
    print(table("SWD floor: real vs real at the same count", summary, "swd_floor", "{:.1f}"))
    print(table("paired MS-SSIM to the same model's uncoded full-step output", summary,
                "msssim", "{:.3f}"))
    print(table("bpp error on sent frames: mean |actual - target|", summary, "bpp_error",
                "{:.3f}"))
    print(table("actual bpp (sent frames)", summary, "bpp", "{:.3f}"))
    print(table("skip rate", summary, "skip_rate", "{:.3f}"))
    print(table("U-Net steps per frame", summary, "steps", "{:.1f}"))
    print(table("generate ms (1 thread)", summary, "gen_ms", "{:.0f}"))
    print(table("decode ms", summary, "dec_ms", "{:.1f}"))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(_clean(record), indent=2) + "\n")
    print(f"\nwhole benchmark {time.time() - t_all:.0f}s -> {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
