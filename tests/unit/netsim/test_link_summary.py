"""``Link.send_summary`` (the network-only fast path's send) against ``Link.send``: the same
fates, counters and queue state on random frame sequences, with every loss model and both
queue limits, on traces whose bytes per opportunity are fractional (scaled)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diffstream.netsim.link import Link
from diffstream.netsim.loss import Bernoulli, GilbertElliott, NoLoss
from diffstream.netsim.synthetic import markov_cellular
from diffstream.netsim.trace import Trace
from diffstream.transport.packets import on_link_sizes


def _loss(kind: str, seed: int):  # type: ignore[no-untyped-def]
    if kind == "none":
        return NoLoss()
    if kind == "bernoulli":
        return Bernoulli(0.05, seed)
    return GilbertElliott(p_good_to_bad=0.05, p_bad_to_good=0.3, loss_good=0.01,
                          loss_bad=0.5, seed=seed)


def _summary_of(transfer):  # type: ignore[no-untyped-def]
    d = transfer.delivered
    return (transfer.n_dropped, transfer.n_lost, transfer.first_arrival_s,
            transfer.last_arrival_s, transfer.delivered_bytes,
            int(transfer.sizes[d][0]) if d.any() else 0, transfer.queue_bytes_before,
            transfer.complete)


def _run_both(trace: Trace, loss: str, queue_bytes: float | None, queue_packets: int | None,
              frames: list[tuple[float, int]]) -> None:
    kw = {"delay_s": 0.03, "queue_bytes": queue_bytes, "queue_packets": queue_packets}
    ref, fast = Link(trace, loss=_loss(loss, 7), **kw), Link(trace, loss=_loss(loss, 7), **kw)
    now = 0.0
    for gap, frame_len in frames:
        now += gap
        sizes = on_link_sizes(frame_len)
        assert fast.queue_bytes_at(now) == ref.queue_bytes_at(now)
        r, f = ref.send(now, sizes), fast.send_summary(now, sizes)
        got = (f.n_dropped, f.n_lost, f.first_arrival_s, f.last_arrival_s, f.delivered_bytes,
               f.first_packet_bytes, f.queue_bytes_before, f.complete)
        assert got == _summary_of(r)
        assert f.packets == len(sizes)
    assert (fast.offered_bytes, fast.departed_bytes, fast.delivered_bytes) == (
        ref.offered_bytes, ref.departed_bytes, ref.delivered_bytes)
    assert fast.last_departure_s == ref.last_departure_s


@settings(max_examples=40, deadline=None)
@given(
    loss=st.sampled_from(["none", "bernoulli", "gilbert"]),
    share=st.sampled_from([1.0, 0.2, 0.037]),
    queue_bytes=st.sampled_from([None, 6000.0, 30000.0]),
    queue_packets=st.sampled_from([None, 5]),
    frames=st.lists(st.tuples(st.sampled_from([0.0, 0.001, 1 / 30, 0.25]),
                              st.integers(0, 9000)), min_size=1, max_size=60),
)
def test_send_summary_matches_send(loss: str, share: float, queue_bytes: float | None,
                                   queue_packets: int | None,
                                   frames: list[tuple[float, int]]) -> None:
    trace = markov_cellular(duration_s=5.0, seed=3).scaled(share)
    _run_both(trace, loss, queue_bytes, queue_packets, frames)


def test_long_run_with_prefetched_loss_matches() -> None:
    """Thousands of frames: the block of loss coins drawn ahead is refilled several times."""
    rng = np.random.default_rng(0)
    frames = [(1 / 30, int(x)) for x in rng.integers(100, 6000, 3000)]
    trace = markov_cellular(duration_s=20.0, seed=1).scaled(0.3)
    _run_both(trace, "bernoulli", 60000.0, None, frames)


def test_send_after_send_summary_uses_the_coins_drawn_ahead() -> None:
    """Mixing the two on one link keeps the loss sequence (no coin skipped)."""
    trace = Trace(np.array([1.0]), 1.0)
    a, b = Link(trace, delay_s=0.0, loss=Bernoulli(0.5, 1)), Link(
        trace, delay_s=0.0, loss=Bernoulli(0.5, 1))
    a.send_summary(0.0, [100] * 10)
    b.send(0.0, [100] * 10)
    ra, rb = a.send(1.0, [100] * 10), b.send(1.0, [100] * 10)
    assert ra.lost.tolist() == rb.lost.tolist()


def test_send_summary_rejects_time_going_back() -> None:
    link = Link(Trace(np.array([1.0]), 1.0), delay_s=0.0)
    link.send_summary(1.0, [100])
    with pytest.raises(ValueError, match="must not decrease"):
        link.send_summary(0.5, [100])
