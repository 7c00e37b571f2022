"""What a generated frame is: a request the sender's model samples (the content layer owns
the type; codecs that generate take it, see ``diffstream.codecs.base.GenerativeCodec``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GenerationRequest:
    """A frame that is generated, not captured (BADiff, paper 000 §4): the sender's model
    samples an image for ``seed`` (and an optional class label or prompt) under the bit
    budget; the receiver scores it against the same request's unconstrained sample."""

    seed: int
    label: int | None = None
    prompt: str | None = None
