"""``python -m diffstream evaluate``: rate–distortion and realism of codecs on your images.

Every input is checked before the first encode, and bad input exits 2 with the path (or
option) and the reason: the output folder, the image folder and every image in it, the
crop size against every image, the codec names and their options, each codec against the
crop shape (``min_bits``), the LPIPS weights. See docs/evaluate.md.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from diffstream.codecs import Codec, codec_class, create_codec
from diffstream.errors import DiffstreamError, InputError
from diffstream.evaluate.bd import bd_rows
from diffstream.evaluate.images import Crop, load_folder, seeded_crops
from diffstream.evaluate.plots import rd_plot
from diffstream.evaluate.progress import EvalProgress
from diffstream.evaluate.report import RunInfo, bd_csv, rd_csv, summary_md, warnings_for
from diffstream.evaluate.run import describe_options, evaluate
from diffstream.evaluate.scoring import LpipsFn, Scorer
from diffstream.output.folders import plan_output

DEFAULT_CODECS = "jpeg,webp,lic,gic"
DEFAULT_BPP = "0.1,0.15,0.25,0.4,0.6,1.0"


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog, description="Rate–distortion and realism of image codecs on a folder of "
        "images: rd.csv, bd.csv, rd.png and summary.md in --out (docs/evaluate.md).")
    p.add_argument("--images", type=Path, required=True,
                   help="folder of images (png, jpg, ppm, webp, bmp, tif)")
    p.add_argument("--out", type=Path, required=True, help="output folder (must be empty or "
                   "new, unless --overwrite)")
    p.add_argument("--codecs", default=DEFAULT_CODECS,
                   help=f"comma-separated codec names or module:Class references "
                        f"(default {DEFAULT_CODECS}); BD uses the first as the anchor")
    p.add_argument("--codec-options", action="append", default=[], metavar="OPTS",
                   help='constructor options: JSON {"gic": {"steps": 4}} or pairs '
                        "gic.steps=4,gic.beta=0 (repeatable)")
    p.add_argument("--size", default="64",
                   help="square crop side in pixels, or 'full' for whole images (default 64)")
    p.add_argument("--crops-per-image", type=int, default=4,
                   help="seeded crops per image (default 4; 'full' uses 1)")
    p.add_argument("--bpp", default=DEFAULT_BPP,
                   help=f"comma-separated target budgets in bits per pixel (default "
                        f"{DEFAULT_BPP}); budget bits = round(bpp * H * W)")
    p.add_argument("--seed", type=int, default=0, help="crop positions and SWD (default 0)")
    p.add_argument("--lpips-weights", type=Path,
                   help="LPIPS weights file (optional; adds an lpips column)")
    p.add_argument("--bootstrap", type=int, default=100,
                   help="bootstrap resamples for the SWD interval (default 100; 0: none)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the results already in --out once this run has finished")
    p.add_argument("--no-progress", action="store_true",
                   help="plain progress lines (automatic when stdout is not a terminal)")
    return p


# --- option parsing --------------------------------------------------------------------


def parse_bpps(text: str) -> list[float]:
    out: list[float] = []
    for part in text.split(","):
        try:
            v = float(part)
        except ValueError:
            raise InputError(f"--bpp {text}: {part.strip()!r} is not a number; give "
                             "comma-separated budgets such as 0.1,0.25,0.5") from None
        if not math.isfinite(v) or v <= 0:
            raise InputError(f"--bpp {text}: {part.strip()} must be a positive number of bits "
                             "per pixel")
        if v in out:
            raise InputError(f"--bpp {text}: {part.strip()} is given twice")
        out.append(v)
    return sorted(out)


def parse_size(text: str) -> int | None:
    if text.strip().lower() == "full":
        return None
    try:
        size = int(text)
    except ValueError:
        raise InputError(f"--size {text}: give a crop side in pixels (e.g. 64) or 'full'"
                         ) from None
    if size < 8:
        raise InputError(f"--size {text}: crops must be at least 8x8 pixels")
    return size


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text  # a bare word: a string option (device=cpu)


def parse_codec_options(values: list[str], codecs: list[str]) -> dict[str, dict[str, Any]]:
    """``--codec-options`` occurrences -> {codec: {option: value}}."""
    out: dict[str, dict[str, Any]] = {c: {} for c in codecs}
    for text in values:
        if text.lstrip().startswith("{"):
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InputError(f"--codec-options {text}: not valid JSON ({exc})") from None
            if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
                raise InputError(f"--codec-options {text}: give a JSON mapping codec -> "
                                 'options, e.g. {"gic": {"steps": 4}}')
            pairs = [(c, k, v) for c, opts in data.items() for k, v in opts.items()]
        else:
            pairs = []
            for item in filter(None, (s.strip() for s in text.split(","))):
                left, eq, val = item.partition("=")
                codec, dot, key = left.rpartition(".")
                if not eq or not dot or not codec or not key:
                    raise InputError(f"--codec-options {text}: {item!r} is not "
                                     "codec.option=value (e.g. gic.steps=4)")
                pairs.append((codec, key, _value(val)))
        for codec, key, val in pairs:
            if codec not in out:
                raise InputError(f"--codec-options {text}: codec {codec!r} is not in --codecs "
                                 f"({', '.join(codecs)})")
            out[codec][key] = val
    return out


def parse_codecs(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise InputError("--codecs: give at least one codec name")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError(f"--codecs {text}: {', '.join(dup)} listed twice")
    return names


# --- checks that need the codecs and images ------------------------------------------


def build_codecs(names: list[str], options: dict[str, dict[str, Any]]) -> dict[str, Codec]:
    """Resolve every name first (an unknown one lists the available codecs), then build each
    through ``create_codec``, so plugin references and codec option models work as in a
    scenario."""
    codecs: dict[str, Codec] = {}
    for name in names:
        try:
            codec_class(name)
        except (KeyError, ImportError, AttributeError, ValueError) as exc:
            # a plain KeyError's str() is the repr of its message; richer errors format
            msg = exc.args[0] if type(exc) is KeyError and exc.args else str(exc)
            raise InputError(f"--codecs: {msg}") from None
    for name in names:
        try:
            codecs[name] = create_codec(name, **options.get(name, {}))
        except (TypeError, ValueError, OSError) as exc:
            raise InputError(f"--codecs {name} with options "
                             f"{describe_options(options.get(name, {}))}: {exc}") from None
    return codecs


def preflight(codecs: dict[str, Codec], crops: list[Crop], folder: Path) -> None:
    """Each codec must accept each crop shape (``min_bits`` raises ValueError otherwise)."""
    shapes: dict[tuple[int, int], Crop] = {}
    for c in crops:
        shapes.setdefault(c.shape, c)
    for name, codec in codecs.items():
        for shape, crop in shapes.items():
            try:
                codec.min_bits(shape)
            except ValueError as exc:
                raise InputError(f"{folder / crop.image}: codec {name} cannot code "
                                 f"{shape[1]}x{shape[0]} images ({exc}); choose another "
                                 "--size") from None


def load_lpips_fn(path: Path) -> LpipsFn:
    from diffstream.metrics.perceptual import load_lpips

    if not path.is_file():
        raise InputError(f"--lpips-weights {path}: no such file")
    try:
        return load_lpips(path)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"--lpips-weights {path}: cannot load LPIPS weights "
                         f"({type(exc).__name__}: {exc})") from None


# --- the command -----------------------------------------------------------------------


def main(argv: list[str], prog: str = "python -m diffstream evaluate") -> int:
    args = build_parser(prog).parse_args(argv)
    console = Console()
    err = Console(stderr=True)
    try:
        return _main(args, f"{prog} {shlex.join(argv)}", console, err)
    except DiffstreamError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt:
        err.print(f"interrupted: nothing was written to {escape(str(args.out))}")
        return 130


def _main(args: argparse.Namespace, command: str, console: Console, err: Console) -> int:
    import torch

    torch.set_num_threads(1)  # small crops: one thread is fastest, and results reproduce
    targets = parse_bpps(args.bpp)
    size = parse_size(args.size)
    names = parse_codecs(args.codecs)
    options = parse_codec_options(args.codec_options, names)
    if args.bootstrap < 0:
        raise InputError(f"--bootstrap {args.bootstrap}: must be >= 0")
    folder = plan_output(args.out, overwrite=args.overwrite)
    images = load_folder(args.images)
    crops = seeded_crops(images, size, args.crops_per_image, args.seed, folder=args.images)
    lpips = load_lpips_fn(args.lpips_weights) if args.lpips_weights else None
    codecs = build_codecs(names, options)
    preflight(codecs, crops, args.images)

    scorer = Scorer(lpips=lpips, seed=args.seed, bootstrap=args.bootstrap)
    total = len(codecs) * len(targets) * len(crops)
    t0 = time.perf_counter()
    with EvalProgress(total, console=console, live=not args.no_progress) as prog:
        result = evaluate(codecs, crops, targets, scorer, tick=prog.tick, on_stage=prog.stage)
    bd = bd_rows(result.rows, names)
    info = RunInfo(command=command, seed=args.seed, images=str(args.images),
                   n_images=len(images), n_crops=len(crops),
                   crop_size="whole images" if size is None else f"{size}x{size}",
                   codecs={n: describe_options(options[n]) for n in names},
                   lpips=lpips is not None)
    out = folder.open()
    rd_csv(out / "rd.csv", result.rows, lpips=lpips is not None)
    bd_csv(out / "bd.csv", bd)
    summary_md(out / "summary.md", result.rows, bd, result.timings, info, names)
    rd_plot(result.rows, names, out / "rd.png",
            title=f"{args.images.name}: {len(crops)} crops ({info.crop_size}), common subset")
    folder.commit()
    for w in warnings_for(result.rows, result.timings):
        err.print(f"[yellow]warning:[/] {escape(w)}", highlight=False, soft_wrap=True)
    console.print(f"evaluated {len(names)} codecs x {len(targets)} targets x {len(crops)} "
                  f"crops in {time.perf_counter() - t0:.0f} s -> {escape(str(args.out))}/ "
                  "(rd.csv, bd.csv, rd.png, summary.md)", highlight=False, soft_wrap=True)
    return 0
