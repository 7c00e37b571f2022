"""A codec's compute charge for the cores: the scenario's compute spec (``pipeline.compute``,
which may not import the codecs) joined with the costs the codec declares.

Lookup order (``ComputeModel.for_codec``): the scenario's inline profile > the central
``PROFILES[name][codec]`` override > the codec's declared ``compute_costs[name]`` (or its
``costs_for(options)``) > measured.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from diffstream.codecs.base import declared_costs
from diffstream.codecs.registry import codec_class
from diffstream.pipeline.compute import CodecCharge, ComputeModel


def codec_charge(compute: ComputeModel, codec: str, options: Mapping[str, Any] | None = None,
                 instance: Any = None) -> CodecCharge:
    """What ``codec`` (with these scenario options) costs under ``compute``. ``instance``:
    the codec already built, when there is one (saves a class lookup)."""
    if not codec:  # network-only runs have no codec
        return compute.for_codec(codec)
    source = instance if instance is not None else codec_class(codec)
    return compute.for_codec(codec, declared_costs(source, options))
