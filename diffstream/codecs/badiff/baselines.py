"""BADiff's baselines (paper 000 §4.1) as generative codecs on the plain DDPM.

- ``cascade-jpeg`` / ``cascade-webp`` / ``cascade-lic``: THE full-step sample (the quality
  reference itself, 100 respaced ancestral steps), then the codec fits it to the budget.
  (The paper's cascades use BPG and Cheng2020; BPG is not installed, JPEG/WebP stand in, and
  LIC is the project's own hyperprior codec.)
- ``earlystop-lic``: naive early stop. The same sampler runs; every ``check_every`` (5)
  steps the predicted x_0 is coded by LIC at its finest step (q_lo, its best quality); the
  run is truncated at the last check whose code still fits the budget ("the smallest t
  whose compressed output satisfies the target bpp"): sampling stops at the first check
  that does not fit *after one that did* (the x_0 predictions of the first steps are
  amplified noise, too costly to fit, and are not candidates), and that earlier x_0 is
  sent, coded by LIC with rate control at the full budget. If no check ever fits, the
  full run is sent. Steps = U-Net calls actually run (the overshooting check included).
- ``dpmsolver-lic`` / ``pndm-lic``: diffusers' DPM-Solver++ (2nd order, 20 steps) and
  PNDM (PLMS, 50 steps) from the same x_T, then LIC at the budget.

All payloads are the inner codec's real bytes; decode is the inner codec's decode.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from diffstream.codecs.badiff.samplers import (
    N_FULL,
    _check_request,
    ddpm_sample,
    load_plain_ddpm,
    one_thread,
    reference_image,
    solver_sample,
)
from diffstream.codecs.base import Encoded, GenerationRequest, Image
from diffstream.codecs.registry import create_codec, register_codec
from diffstream.training.crops import to_uint8


class _GenerativeBaseline:
    name: ClassVar[str]
    progressive: ClassVar[bool] = False
    inner_name: ClassVar[str] = "lic"

    def __init__(self, **inner_options: Any) -> None:
        self.inner = create_codec(self.inner_name, **inner_options)

    def generate(self, request: GenerationRequest, budget_bits: int,
                 shape: tuple[int, int]) -> Encoded:
        raise NotImplementedError

    def _wrap(self, enc: Encoded, steps: int, **meta: Any) -> Encoded:
        enc.steps = steps
        enc.meta.update(meta)
        return enc

    def reference(self, request: GenerationRequest, shape: tuple[int, int]) -> Image:
        return reference_image(request, shape)

    def encode(self, image: Image, budget_bits: int) -> Encoded:
        return self.inner.encode(image, budget_bits)

    def decode(self, payload: bytes, meta: dict[str, Any], shape: tuple[int, int]) -> Image:
        return self.inner.decode(payload, meta, shape)

    def min_bits(self, shape: tuple[int, int]) -> int:
        return self.inner.min_bits(shape)


class _Cascade(_GenerativeBaseline):
    def generate(self, request: GenerationRequest, budget_bits: int,
                 shape: tuple[int, int]) -> Encoded:
        image = reference_image(request, shape)
        return self._wrap(self.inner.encode(image, budget_bits), N_FULL, sampler_steps=N_FULL)


@register_codec("cascade-jpeg")
class CascadeJpeg(_Cascade):
    inner_name = "jpeg"


@register_codec("cascade-webp")
class CascadeWebp(_Cascade):
    inner_name = "webp"


@register_codec("cascade-lic")
class CascadeLic(_Cascade):
    inner_name = "lic"


@register_codec("earlystop-lic")
class EarlyStopLic(_GenerativeBaseline):
    inner_name = "lic"

    def __init__(self, check_every: int = 5, **inner_options: Any) -> None:
        super().__init__(**inner_options)
        self.check_every = int(check_every)

    def _fixed_q_bits(self, image: np.ndarray) -> int:
        """Real LIC payload bits at its finest step (q index 0)."""
        return 8 * len(self.inner.coder.encode(self.inner.analyse(image), 0))

    def generate(self, request: GenerationRequest, budget_bits: int,
                 shape: tuple[int, int]) -> Encoded:
        h, w = _check_request(request, shape)
        budget = int(budget_bits)
        kept: list[np.ndarray] = []
        stopped_at: list[int] = []

        def check(i: int, t: int, x: torch.Tensor, x0: torch.Tensor) -> bool:
            if (i + 1) % self.check_every:
                return False
            img = to_uint8(x0)[0]
            if self._fixed_q_bits(img) <= budget:
                kept[:] = [img]
                return False
            if not kept:  # early x0 predictions are amplified noise: not yet a candidate
                return False
            stopped_at.append(i + 1)
            return True

        with one_thread():
            x0, calls = ddpm_sample(load_plain_ddpm(), request.seed, (h, w), N_FULL,
                                    callback=check)
        if stopped_at:
            image, note = kept[0], f"truncated at step {calls - self.check_every}"
        elif kept:
            image, note = to_uint8(x0)[0], "full run fits"
        else:
            image, note = to_uint8(x0)[0], "no step fits at the finest q: full run"
        enc = self.inner.encode(image, budget)
        return self._wrap(enc, calls, sampler_steps=calls, early_stop=note)


class _SolverLic(_GenerativeBaseline):
    inner_name = "lic"
    solver: ClassVar[str]

    def generate(self, request: GenerationRequest, budget_bits: int,
                 shape: tuple[int, int]) -> Encoded:
        h, w = _check_request(request, shape)
        with one_thread():
            x0, calls = solver_sample(load_plain_ddpm(), self.solver, request.seed, (h, w))
        enc = self.inner.encode(to_uint8(x0)[0], budget_bits)
        return self._wrap(enc, calls, sampler_steps=calls)


@register_codec("dpmsolver-lic")
class DpmSolverLic(_SolverLic):
    solver = "dpmsolver"


@register_codec("pndm-lic")
class PndmLic(_SolverLic):
    solver = "pndm"
