"""Build netsim objects (trace, loss model, link) from a validated scenario."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from diffstream.netsim.link import Link
from diffstream.netsim.loaders import load_trace
from diffstream.netsim.loss import Bernoulli, GilbertElliott, LossModel, NoLoss
from diffstream.netsim.synthetic import constant, markov_cellular, steps
from diffstream.netsim.trace import Trace
from diffstream.scenario.schema import (
    BernoulliSpec,
    ConstantTrace,
    FileTrace,
    GilbertElliottSpec,
    LinkSpec,
    MarkovTrace,
    Scenario,
    StepsTrace,
)
from diffstream.scenario.yaml_lines import resolve_path


def derived_seed(seed: int, stream: str) -> int:
    """Independent, reproducible seeds per random stream (loss, trace, ...)."""
    tag = [ord(c) for c in stream]
    return int(np.random.SeedSequence([seed, *tag]).generate_state(1)[0])


def build_trace(scenario: Scenario, scenario_path: Path) -> Trace:
    """The full-capacity trace (before the stream's link share is applied)."""
    spec = scenario.trace
    if isinstance(spec, FileTrace):
        path = resolve_path(spec.path, scenario_path)
        assert path is not None, "load_scenario checked that the trace exists"
        trace = load_trace(path, spec.kind, csv_unit=spec.csv_unit)
    elif isinstance(spec, ConstantTrace):
        trace = constant(spec.mbps, spec.duration_s)
    elif isinstance(spec, StepsTrace):
        trace = steps([tuple(s) for s in spec.steps], spec.duration_s)
    elif isinstance(spec, MarkovTrace):
        seed = spec.seed if spec.seed is not None else derived_seed(scenario.seed, "trace")
        trace = markov_cellular(seed, spec.duration_s)
    else:  # pragma: no cover - the schema's union is exhaustive
        raise TypeError(f"unknown trace spec {spec!r}")
    if spec.offset_s:
        trace = trace.shifted(spec.offset_s)
    if spec.scale != 1.0:
        trace = trace.scaled(spec.scale)
    return trace


def build_loss(link: LinkSpec, seed: int) -> LossModel:
    """Every arm gets the same loss realisation (common random numbers), so differences
    between arms come from their policies and codecs, not from luck."""
    spec = link.loss
    s = derived_seed(seed, "loss")
    if isinstance(spec, BernoulliSpec):
        return Bernoulli(spec.p, seed=s)
    if isinstance(spec, GilbertElliottSpec):
        return GilbertElliott(spec.p_good_to_bad, spec.p_bad_to_good, loss_good=spec.loss_good,
                              loss_bad=spec.loss_bad, seed=s)
    return NoLoss()


def build_link(scenario: Scenario, stream_trace: Trace) -> Link:
    q = scenario.link.queue
    return Link(stream_trace, delay_s=scenario.link.delay_ms / 1000.0,
                queue_bytes=q.bytes if q else None, queue_packets=q.packets if q else None,
                loss=build_loss(scenario.link, scenario.seed))
