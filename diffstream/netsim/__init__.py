"""Network model: traces (capacity over time), synthetic generators, loss, the bottleneck link."""

from diffstream.netsim.link import FrameTransfer, Link
from diffstream.netsim.loaders import (
    load_csv,
    load_mahimahi,
    load_pensieve,
    load_sabre,
    load_trace,
)
from diffstream.netsim.loss import Bernoulli, GilbertElliott, LossModel, NoLoss
from diffstream.netsim.trace import PeriodLatency, Trace, trace_from_rates

# The generators are imported lazily: ``python -m diffstream.netsim.synthetic`` would
# otherwise find the module already imported by this package and warn.
_SYNTHETIC = (
    "LTE_LIKE",
    "MarkovParams",
    "constant",
    "markov_cellular",
    "steps",
    "trace_stats",
    "write_mahimahi",
)


def __getattr__(name: str) -> object:
    if name in _SYNTHETIC:
        from diffstream.netsim import synthetic

        return getattr(synthetic, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "LTE_LIKE",
    "Bernoulli",
    "FrameTransfer",
    "GilbertElliott",
    "Link",
    "LossModel",
    "MarkovParams",
    "NoLoss",
    "PeriodLatency",
    "Trace",
    "constant",
    "load_csv",
    "load_mahimahi",
    "load_pensieve",
    "load_sabre",
    "load_trace",
    "markov_cellular",
    "steps",
    "trace_from_rates",
    "trace_stats",
    "write_mahimahi",
]
