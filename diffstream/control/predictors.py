"""Throughput predictors shared by the ``rate``, ``deadline`` and ``mpc`` policies.

Each predictor is a frozen pydantic model with a ``kind`` and its options, and a pure
``predict(samples) -> float | None`` over the observation's throughput samples (bits/s,
oldest first; ``SenderView.samples`` keeps the last ``SAMPLE_HISTORY``). ``None`` means
"no usable sample yet" (the policies then use their start-up budget). Predictors keep no
state between frames: a recursive filter (EWMA, Kalman) is rerun over the kept samples on
every call, so a policy stays a pure function of its observation.

* ``harmonic``: the harmonic mean of the last ``window`` samples (the policies' rule before
  this module); ``robust: true`` divides it by 1 + the worst recent relative prediction
  error (robust MPC, Yin et al. SIGCOMM'15). Bit for bit the old ``robust_throughput_bps``.
* ``ewma``: Sabre's estimator (Spiteri et al., ``sabre.py`` ``Ewma``): one exponentially
  weighted average per half-life, each corrected for its zero start, and the smaller
  (more conservative) of them. Sabre weights a sample by its download time in ms; the
  observation holds rates only (one sample per delivered frame), so here every sample
  weighs one unit and the half-lives are in samples (deviation, see docs/policies/
  predictors_mpc.md).
* ``kalman``: a 1-D Kalman filter on log throughput with a random-walk state:
  ``x_k = x_{k-1} + w`` (``w ~ N(0, process_noise)``), ``z_k = log(sample_k) + v``
  (``v ~ N(0, measurement_noise)``). The prediction for the next frame is the posterior
  mean, returned as ``exp(x)``: in log space a 2x jump and a halving weigh the same, and
  ``exp`` of the mean of a log is a median, below the mean of a skewed rate.

``robust`` is available on every predictor: the estimate divided by 1 + the largest relative
error of the predictor's own one-step predictions over the last few samples.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SAMPLE_HISTORY = 64
"""Throughput samples the sender keeps (``SenderView.samples``). It was 20; the EWMA's slow
half-life (8 samples) still gives a sample 20 back 18 % of the newest one's weight, so 64
keeps the truncation below 0.4 % (0.5 ** 8). The harmonic rules read at most 2 x window."""


def _positive(samples: Sequence[float]) -> list[float]:
    """Samples that carry a rate (inf/nan/<= 0 do not)."""
    return [s for s in samples if 0 < s < math.inf]


def harmonic_mean(samples: Sequence[float]) -> float | None:
    positive = _positive(samples)  # inf/nan samples carry no rate
    if not positive:
        return None
    return len(positive) / sum(1.0 / s for s in positive)


def robust_throughput_bps(samples: tuple[float, ...], window: int) -> float | None:
    """Harmonic mean of the last ``window`` samples / (1 + max recent relative error).

    The errors are recomputed from the samples themselves (sample i predicted by the harmonic
    mean of the ``window`` samples before it; error = |prediction - actual| / actual) for the
    last ``window`` samples, so the policy stays a pure function of the observation.
    """
    estimate = harmonic_mean(samples[-window:])
    if estimate is None:
        return None
    errors = [0.0]
    for i in range(max(1, len(samples) - window), len(samples)):
        actual = samples[i]
        predicted = harmonic_mean(samples[max(0, i - window) : i])
        if predicted is not None and actual > 0:
            errors.append(abs(predicted - actual) / actual)
    return estimate / (1.0 + max(errors))


def robust_discount(predict: Callable[[tuple[float, ...]], float | None],
                    samples: tuple[float, ...], window: int) -> float | None:
    """``predict(samples)`` / (1 + the largest relative error of ``predict``'s one-step
    predictions of the last ``window`` samples): robust MPC's discount for any predictor."""
    estimate = predict(samples)
    if estimate is None:
        return None
    errors = [0.0]
    for i in range(max(1, len(samples) - window), len(samples)):
        actual = samples[i]
        predicted = predict(samples[:i])
        if predicted is not None and 0 < actual < math.inf:
            errors.append(abs(predicted - actual) / actual)
    return estimate / (1.0 + max(errors))


class PredictorModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str

    @property
    def label(self) -> str:
        return self.kind

    def predict(self, samples: tuple[float, ...]) -> float | None:
        raise NotImplementedError


_ROBUST = Field(False, description="Divide the estimate by 1 + the largest relative error of "
                "this predictor's own recent one-step predictions (robust MPC's discount).")
_ERROR_WINDOW = Field(5, ge=1, description="Recent samples whose prediction errors set the "
                      "robust discount.")


class HarmonicMean(PredictorModel):
    """Harmonic mean of the last ``window`` samples: the rate at which equal-sized frames
    would have been delivered, dominated by the slow samples a budget must survive."""

    kind: Literal["harmonic"] = "harmonic"
    window: int = Field(5, ge=1, description="Number of most recent samples averaged.")
    robust: bool = Field(False, description="Divide by 1 + the largest relative error of the "
                         "harmonic mean's predictions of the last `window` samples.")

    @property
    def label(self) -> str:
        return f"hm{self.window}{'r' if self.robust else ''}"

    def predict(self, samples: tuple[float, ...]) -> float | None:
        if self.robust:
            return robust_throughput_bps(samples, self.window)
        return harmonic_mean(samples[-self.window:])


@functools.lru_cache(maxsize=64)
def harmonic_predictor(window: int, robust: bool = False) -> HarmonicMean:
    """The (frozen, so shareable) ``HarmonicMean`` a policy without a ``predictor`` uses:
    built once per option pair instead of validated anew on every frame."""
    return HarmonicMean(window=window, robust=robust)


class Ewma(PredictorModel):
    """Sabre's EWMA, per sample: for each half-life h, ``a = 0.5 ** (1 / h)``,
    ``S <- a S + (1 - a) x`` from ``S = 0``, corrected for the zero start by dividing by
    ``1 - 0.5 ** (n / h)`` after n samples (so a constant series predicts itself exactly);
    the estimate is the minimum over the half-lives (Sabre's conservative choice: the fast
    average drops first on a fall, the slow one lags on a rise)."""

    kind: Literal["ewma"] = "ewma"
    half_lives: tuple[float, ...] = Field(
        (3.0, 8.0), min_length=1, description="Half-lives in samples (Sabre's defaults are "
        "3 and 8 s of download time; here each delivered frame's sample is one unit).")
    robust: bool = _ROBUST
    error_window: int = _ERROR_WINDOW

    @model_validator(mode="after")
    def _check(self) -> Ewma:
        if any(not (h > 0 and math.isfinite(h)) for h in self.half_lives):
            raise ValueError(f"half_lives must be positive and finite, got {list(self.half_lives)}")
        return self

    @property
    def label(self) -> str:
        return "ewma(" + ",".join(f"{h:g}" for h in self.half_lives) + ")"

    def averages(self, samples: tuple[float, ...]) -> list[float] | None:
        """The bias-corrected average for each half-life (None without a usable sample)."""
        xs = _positive(samples)
        if not xs:
            return None
        out = []
        for h in self.half_lives:
            a = 0.5 ** (1.0 / h)
            s = 0.0
            for x in xs:
                s = a * s + (1.0 - a) * x
            out.append(s / (1.0 - 0.5 ** (len(xs) / h)))
        return out

    def _plain(self, samples: tuple[float, ...]) -> float | None:
        avgs = self.averages(samples)
        return None if avgs is None else min(avgs)

    def predict(self, samples: tuple[float, ...]) -> float | None:
        if self.robust:
            return robust_discount(self._plain, samples, self.error_window)
        return self._plain(samples)


class KalmanStep(BaseModel):
    """One update of the filter: the gain it used and the posterior (log space)."""

    model_config = ConfigDict(frozen=True)

    gain: float
    mean: float
    variance: float


class Kalman(PredictorModel):
    """1-D random-walk Kalman filter on log throughput (module docstring).

    Start: the first sample's log, variance ``measurement_noise``. Each later sample:
    predict ``P- = P + q``; gain ``K = P- / (P- + r)``; ``x <- x + K (log z - x)``,
    ``P = (1 - K) P-``. The gain converges to the closed form
    ``K = P-/(P- + r)`` with ``P- = (q + sqrt(q^2 + 4 q r)) / 2`` (the Riccati fixed point),
    which is how the test checks it. With the defaults (q = 0.05, r = 0.1) K = 0.5.
    """

    kind: Literal["kalman"] = "kalman"
    process_noise: float = Field(
        0.05, gt=0, description="Variance of the log-throughput random walk per sample "
        "(0.05: a one-sigma change of about 25 % between frames).")
    measurement_noise: float = Field(
        0.1, gt=0, description="Variance of one sample's log around the true log "
        "throughput (0.1: one-sigma about 37 %).")
    robust: bool = _ROBUST
    error_window: int = _ERROR_WINDOW

    @property
    def label(self) -> str:
        return f"kalman(q={self.process_noise:g},r={self.measurement_noise:g})"

    def steps(self, samples: tuple[float, ...]) -> list[KalmanStep]:
        """The filter run over the usable samples, one ``KalmanStep`` per sample."""
        q, r = self.process_noise, self.measurement_noise
        out: list[KalmanStep] = []
        x = p = 0.0
        for z in _positive(samples):
            y = math.log(z)
            if not out:
                x, p, k = y, r, 1.0
            else:
                prior = p + q
                k = prior / (prior + r)
                x = x + k * (y - x)
                p = (1.0 - k) * prior
            out.append(KalmanStep(gain=k, mean=x, variance=p))
        return out

    def steady_state_gain(self) -> float:
        q, r = self.process_noise, self.measurement_noise
        prior = (q + math.sqrt(q * q + 4.0 * q * r)) / 2.0
        return prior / (prior + r)

    def _plain(self, samples: tuple[float, ...]) -> float | None:
        run = self.steps(samples)
        return math.exp(run[-1].mean) if run else None

    def predict(self, samples: tuple[float, ...]) -> float | None:
        if self.robust:
            return robust_discount(self._plain, samples, self.error_window)
        return self._plain(samples)


def check_predictor_options(policy: BaseModel, legacy: tuple[str, ...]) -> None:
    """A policy with a ``predictor:`` must not also change the options of the harmonic mean
    it replaces (``window``, ``robust``): the two would disagree about which one is used.
    (Their defaults are allowed: a dumped policy carries every field and must load again.)"""
    if getattr(policy, "predictor", None) is None:
        return
    fields = type(policy).model_fields
    both = [name for name in legacy if getattr(policy, name) != fields[name].default]
    if both:
        raise ValueError(
            f"{' and '.join(both)}: an option of the default harmonic-mean predictor, but "
            f"`predictor:` is given too; set it inside the predictor instead (e.g. "
            f"predictor: {{kind: harmonic, window: 5, robust: true}})")


PredictorSpec = Annotated[HarmonicMean | Ewma | Kalman, Field(discriminator="kind")]
"""A policy's ``predictor:`` mapping (``kind: harmonic | ewma | kalman`` plus options)."""

__all__ = [
    "SAMPLE_HISTORY",
    "check_predictor_options",
    "Ewma",
    "HarmonicMean",
    "Kalman",
    "KalmanStep",
    "PredictorModel",
    "PredictorSpec",
    "harmonic_mean",
    "harmonic_predictor",
    "robust_discount",
    "robust_throughput_bps",
]
