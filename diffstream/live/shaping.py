"""Trace shaping at the sender: make a LAN behave like the scenario's (e.g. LTE) link.

Each frame is pushed, as MTU packets, through the simulator's own link model
(``netsim.Link``: the trace x ``link.share`` drained with mahimahi byte accounting, the
drop-tail ``link.queue``, ``link.loss`` and ``link.delay_ms``) at the moment it is sent. The
sender then holds it and releases it to the real network when that link would have delivered
its last packet, so the receiver sees the trace's rate, queueing delay and loss, plus the
real network's own delay (small on a LAN). A frame whose packets the model dropped or lost is
released with only the contiguous prefix that survived, exactly what the simulated receiver
would reassemble (a progressive codec may still decode it; others record it lost).

Frames leave in order: a frame is never released before the one sent ahead of it (the model
is a FIFO, and a frame that lost everything is released when its packets would have left).
Off by default; ``live.shaping: true`` or ``send --shape`` turns it on.

Progressive codecs (DiffC) and deadlines: the simulated receiver decodes the prefix of a
frame whose packets arrived before the deadline minus the decode time, and drops the rest.
Live, the frame travels as one message, so the shaper makes that cut: given ``cut_s`` (the
sender passes the frame's deadline minus its decode-time estimate and one encode time, as
its loop cannot release a held frame while it encodes the next), a progressive frame
whose last packet would arrive later is released at the arrival of its last packet in time,
holding only the packets that arrived by ``cut_s``; the receiver decodes that prefix and logs
``partial`` and ``prefix_step``. Its late packets still occupy the emulated link. A frame with
no packet in time, or of a non-progressive codec, is released whole (and late), as before.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from diffstream.codecs.base import capabilities_of
from diffstream.codecs.registry import codec_class
from diffstream.netsim.loss import frame_delivery_prob
from diffstream.netsim.trace import Trace
from diffstream.scenario.build import build_link, build_trace
from diffstream.scenario.schema import Scenario
from diffstream.transport.packets import chunk_size, on_link_sizes


@dataclass(frozen=True)
class ShapedFrame:
    release_s: float  # stream time when the frame goes to the real network
    prefix_len: int  # bytes of the frame that survived, contiguous from byte 0
    packets: int
    dropped: int  # drop-tail at the emulated queue
    lost: int  # random loss on the emulated link
    queue_bytes: float  # emulated queue just before the frame entered
    # the trace's (share-scaled) rate over the frame's interval [capture, capture + 1/fps),
    # as the simulator logs it: not from the send time, which lags capture by the encode
    capacity_bps: float
    cut: bool = False  # a progressive frame cut to the packets that arrive by ``cut_s``


def streams_progressive(scenario: Scenario) -> bool:
    """Whether the live scenario's streaming arm uses a progressive codec."""
    arm = getattr(scenario, "stream_arm", None)  # a LiveScenario; plain scenarios: no arm
    return arm is not None and capabilities_of(codec_class(arm.codec)).progressive


class TraceShaper:
    def __init__(self, scenario: Scenario, scenario_path: Path, max_held: int = 4096,
                 progressive: bool | None = None) -> None:
        self.scenario = scenario
        self.progressive = streams_progressive(scenario) if progressive is None else progressive
        self.base_trace: Trace = build_trace(scenario, scenario_path)
        self.trace: Trace = self.base_trace.scaled(scenario.link.share)
        self.link = build_link(scenario, self.trace)
        self.mtu = scenario.link.mtu
        # what a planner may know of the loss: a function of the model's parameters only, so
        # it holds for the link ``align`` rebuilds
        self.delivery_prob = frame_delivery_prob(self.link.loss, self.mtu)
        self.interval = 1.0 / scenario.frame.fps
        self.max_held = max_held
        self.held: deque[tuple[float, Any]] = deque()
        self._last_release = -math.inf

    def align(self, origin_s: float) -> None:
        """Start the trace at stream time ``origin_s`` (frame 0's capture), as the simulator
        starts it at frame 0; call before the first frame. The stream clock starts at the
        receiver's hello, up to seconds before the first capture."""
        self.trace = self.base_trace.scaled(self.scenario.link.share).shifted(-origin_s)
        self.link = build_link(self.scenario, self.trace)

    def admit(self, now_s: float, frame_len: int, cut_s: float | None = None, *,
              capture_s: float | None = None) -> ShapedFrame:
        """Run one frame through the link model at stream time ``now_s``; ``cut_s``: the
        latest useful arrival of a progressive frame's packets (see the module notes);
        ``capture_s``: the frame's capture, which dates its ``capacity_bps`` (default
        ``now_s``)."""
        sizes = on_link_sizes(frame_len, self.mtu)
        queue_before = self.link.queue_bytes_at(now_s)
        t = self.link.send(now_s, sizes)
        ok = t.delivered
        n_ok = len(ok) if bool(ok.all()) else int(np.argmin(ok))
        departed = t.depart_s[~t.dropped]
        release = (float(np.max(departed)) if departed.size else now_s) + self.link.delay_s
        cut = False
        if self.progressive and cut_s is not None and n_ok > 0:
            in_time = t.arrive_s[:n_ok] <= cut_s
            n_in = n_ok if bool(in_time.all()) else int(np.argmin(in_time))
            if 0 < n_in < len(sizes):  # some packets in time, the rest late or gone
                cut = n_in < n_ok or release > cut_s
                if cut:
                    n_ok, release = n_in, float(t.arrive_s[n_in - 1])
        prefix = min(frame_len, n_ok * chunk_size(self.mtu))
        release = max(release, self._last_release)
        self._last_release = release
        return ShapedFrame(
            release_s=release, prefix_len=prefix, packets=len(sizes), dropped=t.n_dropped,
            lost=t.n_lost, queue_bytes=float(queue_before),
            capacity_bps=self.capacity_bps(now_s if capture_s is None else capture_s), cut=cut,
        )

    def capacity_bps(self, t_s: float) -> float:
        return float(self.trace.capacity_bps(t_s, t_s + self.interval))

    # -- the hold queue --------------------------------------------------------------
    def hold(self, release_s: float, item: Any) -> bool:
        """Queue ``item`` until ``release_s``; False when the hold queue is full."""
        if len(self.held) >= self.max_held:
            return False
        self.held.append((release_s, item))
        return True

    def due(self, now_s: float) -> list[Any]:
        """Items whose release time has come, in order."""
        out = []
        while self.held and self.held[0][0] <= now_s:
            out.append(self.held.popleft()[1])
        return out

    def next_release(self) -> float | None:
        return self.held[0][0] if self.held else None
