"""The shared training loop: progress bar, checkpoints, resume, log lines when not on a TTY.

Checkpoints (model + optimizer + step, ``torch.save``; loaded with ``weights_only=True``)
go to ``--out`` every ``--ckpt-every`` steps; ``--resume`` continues from them. The data
stream is a pure function of (seed, step), so a resumed run sees the batches it would have
seen.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def step_rng(seed: int, step: int) -> np.random.Generator:
    return np.random.default_rng([seed, step])


class Trainer:
    """Shared loop: progress bar, checkpoints, resume, log lines when not on a TTY."""

    def __init__(self, out: Path, stage: str, steps: int, resume: bool, seed: int) -> None:
        self.out, self.stage, self.steps, self.resume, self.seed = out, stage, steps, resume, seed
        self.ckpt = out / f"{stage}.ckpt"

    def run(self, modules: dict[str, torch.nn.Module], opt: torch.optim.Optimizer,
            sched: Any, step_fn: Callable[[int, np.random.Generator], dict[str, float]],
            ckpt_every: int) -> dict[str, float]:
        start, elapsed = 0, 0.0
        state: dict[str, Any] = {}
        if self.resume and self.ckpt.is_file():
            state = torch.load(self.ckpt, map_location="cpu", weights_only=True)
            for name, m in modules.items():
                m.load_state_dict(state["modules"][name])
            opt.load_state_dict(state["opt"])
            sched.load_state_dict(state["sched"])
            start, elapsed = int(state["step"]), float(state["elapsed"])
            print(f"[{self.stage}] resumed at step {start}", flush=True)
        ema: dict[str, float] = dict(state.get("ema", {})) if start else {}
        t0 = time.time() - elapsed
        tty = sys.stdout.isatty()
        cols = (TextColumn(f"[bold]{self.stage}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn())
        with Progress(*cols, disable=not tty) as bar:
            task = bar.add_task(self.stage, total=self.steps, completed=start, info="")
            for step in range(start, self.steps):
                logs = step_fn(step, step_rng(self.seed, step))
                sched.step()
                for k, v in logs.items():
                    ema[k] = v if k not in ema else 0.98 * ema[k] + 0.02 * v
                info = "  ".join(f"{k} {v:.4g}" for k, v in ema.items())
                bar.update(task, advance=1, info=info)
                done = step + 1
                if not tty and (done % 50 == 0 or done == self.steps):
                    print(f"[{self.stage}] step {done}/{self.steps} {info} "
                          f"elapsed {time.time() - t0:.0f}s", flush=True)
                if done % ckpt_every == 0 or done == self.steps:
                    torch.save({"modules": {n: m.state_dict() for n, m in modules.items()},
                                "opt": opt.state_dict(), "sched": sched.state_dict(),
                                "step": done, "elapsed": time.time() - t0, "ema": ema},
                               self.ckpt)
        ema["wall_s"] = time.time() - t0
        return ema


def cosine_schedule(opt: torch.optim.Optimizer, steps: int, warmup: int = 100) -> Any:
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = (step - warmup) / max(1, steps - warmup)
        return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
    return torch.optim.lr_scheduler.LambdaLR(opt, f)
