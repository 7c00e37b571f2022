"""The bottleneck link: hand-computed departures, drop-tail, loss, and a brute-force oracle."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diffstream.netsim.link import Link
from diffstream.netsim.loaders import load_trace
from diffstream.netsim.loss import Bernoulli, GilbertElliott, NoLoss, frame_delivery_prob
from diffstream.netsim.synthetic import markov_cellular
from diffstream.netsim.trace import Trace

MS = 0.001


@pytest.fixture
def one_ms(tmp_path: Path) -> Trace:
    """12 Mbit/s: the mahimahi file with the single line ``1`` (one opportunity per ms)."""
    p = tmp_path / "12mbps.down"
    p.write_text("1\n")
    return load_trace(p, "mahimahi")


class Pattern:
    """A loss model returning a fixed pattern, recording how many packets it was asked for."""

    def __init__(self, pattern: list[bool]) -> None:
        self.pattern = list(pattern)
        self.asked: list[int] = []

    def lost(self, n: int) -> np.ndarray:
        self.asked.append(n)
        out, self.pattern = self.pattern[:n], self.pattern[n:]
        return np.array(out, dtype=bool)


# --------------------------------------------------------------------------- departures
def test_frame_of_100_packets(one_ms: Trace) -> None:
    link = Link(one_ms, delay_s=0.020)
    ft = link.send(0.0, [1500] * 100)
    assert np.array_equal(ft.depart_s, np.arange(1, 101) / 1000)  # packet i at (i+1) ms
    assert ft.last_arrival_s == 0.100 + 0.020
    assert ft.first_arrival_s == 0.001 + 0.020
    assert ft.complete and ft.delivered_bytes == 150_000
    assert ft.n_dropped == 0 and ft.n_lost == 0 and ft.queue_bytes_before == 0.0
    assert link.offered_bytes == link.departed_bytes == link.delivered_bytes == 150_000
    assert link.utilisation == 1.0 and link.last_departure_s == 0.1


def test_small_packets_share_an_opportunity(one_ms: Trace) -> None:
    link = Link(one_ms, delay_s=0.0)
    ft = link.send(0.0, [500, 500, 500, 500])
    assert ft.depart_s.tolist() == [0.001, 0.001, 0.001, 0.002]
    assert link.offered_bytes == 3000  # two opportunities touched; 1000 B of the 2nd unused


def test_leftover_is_wasted_when_the_queue_empties(one_ms: Trace) -> None:
    link = Link(one_ms, delay_s=0.0)
    assert link.send(0.0, [500]).depart_s.tolist() == [0.001]
    assert link.send(0.0015, [500]).depart_s.tolist() == [0.002]  # not the 1 ms leftover
    assert link.offered_bytes == 3000 and link.departed_bytes == 1000
    assert link.utilisation == pytest.approx(1 / 3)


def test_leftover_serves_a_packet_queued_by_then(one_ms: Trace) -> None:
    link = Link(one_ms, delay_s=0.0)
    link.send(0.0, [500])
    assert link.send(0.001, [500]).depart_s.tolist() == [0.001]  # arrived at the opportunity
    assert link.offered_bytes == 1500  # one opportunity served both
    link2 = Link(one_ms, delay_s=0.0)
    assert link2.send(0.0, [2000]).depart_s.tolist() == [0.002]  # 1500 + 500 of opp 2
    assert link2.send(0.0005, [1000]).depart_s.tolist() == [0.002]  # rest of opp 2
    assert link2.offered_bytes == 3000


def test_wrap_around_keeps_the_opportunities_at_the_period(tmp_path: Path) -> None:
    p = tmp_path / "w.down"
    p.write_text("0\n0\n2\n")  # loops: 0,0,2 | 2,2,4 | 4,4,6 ...
    link = Link(load_trace(p, "mahimahi"), delay_s=0.0)
    ft = link.send(0.0, [1500] * 7)
    assert np.round(ft.depart_s * 1000, 9).tolist() == [0, 0, 2, 2, 2, 4, 4]
    ft = link.send(0.0025, [1500, 1500])
    assert np.round(ft.depart_s * 1000, 9).tolist() == [4, 6]


def test_wrap_around_a_gap_at_the_period_boundary(tmp_path: Path) -> None:
    p = tmp_path / "g.down"
    p.write_text("3\n10\n")  # opportunities 3, 10, 13, 20, 23, 30 ms ...
    link = Link(load_trace(p, "mahimahi"), delay_s=0.005)
    ft = link.send(0.011, [1500, 1500, 1500])
    assert np.round(ft.depart_s * 1000, 9).tolist() == [13, 20, 23]
    assert np.round(ft.arrive_s * 1000, 9).tolist() == [18, 25, 28]


def test_scaled_trace_takes_ceil_size_over_15_opportunities(one_ms: Trace) -> None:
    share = one_ms.scaled(0.01)
    assert share.bytes_per_opportunity == 15.0
    link = Link(share, delay_s=0.0)
    ft = link.send(0.0, [1500, 1000, 7])
    # cumulative 1500, 2500, 2507 bytes -> 100, ceil(166.7) = 167, ceil(167.1) = 168 opps
    assert np.round(ft.depart_s * 1000, 9).tolist() == [100, 167, 168]
    assert link.offered_bytes == 168 * 15
    alone = Link(share, delay_s=0.0).send(0.0, [1000])
    assert np.round(alone.depart_s * 1000, 9).tolist() == [math.ceil(1000 / 15)]


@pytest.mark.parametrize(("share", "size"), [(0.29, 435), (0.17, 255), (0.07, 105)])
def test_inexact_bytes_per_opportunity_stay_exact(one_ms: Trace, share: float, size: int) -> None:
    # 1500 * 0.29 = 434.99999999999994: a 435-byte packet must still take one opportunity
    link = Link(one_ms.scaled(share), delay_s=0.0)
    ft = link.send(0.0, [size] * 50)
    assert np.round(ft.depart_s * 1000, 9).tolist() == list(range(1, 51))
    ft = link.send(0.0505, [size])
    assert np.round(ft.depart_s * 1000, 9).tolist() == [51]


# --------------------------------------------------------------------------- drop-tail
def test_packet_limited_queue_drops_the_last_five(one_ms: Trace) -> None:
    link = Link(one_ms, delay_s=0.0, queue_packets=10)
    ft = link.send(0.0, [1500] * 15)
    assert ft.dropped.tolist() == [False] * 10 + [True] * 5
    assert np.isnan(ft.depart_s[10:]).all() and np.isnan(ft.arrive_s[10:]).all()
    assert ft.depart_s[:10].tolist() == [i / 1000 for i in range(1, 11)]
    assert not ft.lost.any() and not ft.complete and ft.delivered_bytes == 15_000
    # occupancy falls as packets depart (a packet leaves at its departure instant)
    counts = [link.queue_packets_at(t) for t in (0.0, 0.0005, 0.001, 0.0035, 0.0099, 0.010)]
    assert counts == [10, 10, 9, 7, 1, 0]
    assert link.queue_bytes_at(0.0035) == 7 * 1500
    ft2 = link.send(0.0035, [1500] * 5)  # 7 queued: 3 fit
    assert ft2.queue_bytes_before == 7 * 1500
    assert ft2.dropped.tolist() == [False, False, False, True, True]
    assert ft2.depart_s[:3].tolist() == [0.011, 0.012, 0.013]
    assert link.departed_bytes == 13 * 1500


def test_byte_limited_queue_drops_what_does_not_fit(one_ms: Trace) -> None:
    link = Link(one_ms, delay_s=0.0, queue_bytes=4000)
    ft = link.send(0.0, [1500, 1500, 1500, 500, 1000])
    # occupancy 1500, 3000, (4500 > 4000: drop), 3500, (4500: drop)
    assert ft.dropped.tolist() == [False, False, True, False, True]
    assert ft.depart_s[[0, 1, 3]].tolist() == [0.001, 0.002, 0.003]
    assert link.queue_bytes_at(0.0) == 3500 and link.queue_bytes_at(0.002) == 500


# --------------------------------------------------------------------------- loss
def test_loss_applies_only_to_packets_that_were_not_dropped(one_ms: Trace) -> None:
    loss = Pattern([False, True, False])
    link = Link(one_ms, delay_s=0.01, queue_packets=3, loss=loss)
    ft = link.send(0.0, [1000, 1000, 1000, 1000, 1000])
    assert loss.asked == [3]
    assert ft.dropped.tolist() == [False, False, False, True, True]
    assert ft.lost.tolist() == [False, True, False, False, False]
    assert ft.delivered.tolist() == [True, False, True, False, False]
    assert ft.n_lost == 1 and ft.n_dropped == 2 and ft.delivered_bytes == 2000
    assert not np.isnan(ft.depart_s[1]) and np.isnan(ft.arrive_s[1])  # used the link
    assert ft.first_arrival_s == 0.001 + 0.01 and ft.last_arrival_s == 0.002 + 0.01
    assert link.departed_bytes == 3000 and link.delivered_bytes == 2000


def test_everything_lost_gives_no_arrival(one_ms: Trace) -> None:
    ft = Link(one_ms, delay_s=0.0, loss=Bernoulli(1.0, seed=0)).send(0.0, [100, 100])
    assert ft.first_arrival_s is None and ft.last_arrival_s is None
    assert ft.n_lost == 2 and not ft.complete and ft.delivered_bytes == 0


def _runs(mask: np.ndarray) -> np.ndarray:
    """Lengths of the runs of True in ``mask``."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)


def test_bernoulli_rate_and_seeding() -> None:
    mask = Bernoulli(0.05, seed=3).lost(100_000)
    assert 0.047 <= mask.mean() <= 0.053  # sd of the mean is 0.0007
    assert np.array_equal(Bernoulli(0.05, seed=3).lost(1000), mask[:1000])
    chunked = Bernoulli(0.05, seed=3)
    assert np.array_equal(np.concatenate([chunked.lost(7), chunked.lost(993)]), mask[:1000])
    assert not np.array_equal(Bernoulli(0.05, seed=4).lost(1000), mask[:1000])
    assert not NoLoss().lost(5).any()
    with pytest.raises(ValueError):
        Bernoulli(1.5, seed=0)


def test_gilbert_elliott_bursts() -> None:
    ge = GilbertElliott(0.02, 0.25, seed=11)  # pi_bad = 0.02 / 0.27
    assert ge.pi_bad == pytest.approx(0.02 / 0.27) and ge.stationary_loss == ge.pi_bad
    mask = ge.lost(200_000)
    assert mask.mean() == pytest.approx(0.02 / 0.27, rel=0.1)
    assert _runs(mask).mean() == pytest.approx(1 / 0.25, rel=0.1)  # loss_bad = 1, good = 0
    again = GilbertElliott(0.02, 0.25, seed=11)
    parts = [again.lost(n) for n in (1, 10, 989, 5000)]
    assert np.array_equal(np.concatenate(parts), mask[:6000])  # batching does not matter


def test_gilbert_elliott_partial_loss_rates() -> None:
    ge = GilbertElliott(0.02, 0.25, loss_good=0.01, loss_bad=0.5, seed=5)
    want = 0.02 / 0.27 * 0.5 + 0.25 / 0.27 * 0.01
    assert ge.stationary_loss == pytest.approx(want)
    assert ge.lost(200_000).mean() == pytest.approx(want, rel=0.1)
    never = GilbertElliott(0.0, 0.5, seed=1)  # starts good (pi_bad = 0) and stays good
    assert not never.lost(1000).any()


@pytest.mark.parametrize("model", [
    Bernoulli(0.05, seed=2),
    GilbertElliott(0.02, 0.25, seed=11),
    GilbertElliott(0.02, 0.25, loss_good=0.01, loss_bad=0.5, seed=5),
], ids=["bernoulli", "ge", "ge-partial"])
def test_all_arrive_matches_the_drawn_frames(model: Bernoulli | GilbertElliott) -> None:
    """``all_arrive(n)``, the planner's P(a frame of n packets arrives whole), agrees with
    frames cut from the model's own draws (sd of each estimate < 0.0015)."""
    fresh = type(model)(**({"p": model.p, "seed": 9} if isinstance(model, Bernoulli) else
                           {"p_good_to_bad": model.p_gb, "p_bad_to_good": model.p_bg,
                            "loss_good": model.loss_good, "loss_bad": model.loss_bad,
                            "seed": 9}))
    for n in (1, 3, 8):
        frames = fresh.lost(n * 60_000).reshape(-1, n)
        assert model.all_arrive(n) == pytest.approx((~frames).all(axis=1).mean(), abs=0.006)
    assert model.all_arrive(1) == pytest.approx(1.0 - model.stationary_loss if
                                                isinstance(model, GilbertElliott) else 0.95)
    assert model.all_arrive(0) == 1.0 and NoLoss().all_arrive(40) == 1.0
    if isinstance(model, GilbertElliott) and model.loss_good == 0:  # bursts: fewer frames hit
        assert model.all_arrive(8) > (1.0 - model.stationary_loss) ** 8 + 0.05


def test_frame_delivery_prob_counts_packets_by_mtu() -> None:
    assert frame_delivery_prob(NoLoss(), 1500) is None
    prob = frame_delivery_prob(Bernoulli(0.1, seed=0), 1500)
    assert prob is not None
    assert prob(40) == prob(1500) == pytest.approx(0.9)  # one packet
    assert prob(1501) == pytest.approx(0.81) and prob(4500) == pytest.approx(0.9 ** 3)


# --------------------------------------------------------------------------- accounting
def test_offered_bytes_counts_opportunities_touched(one_ms: Trace) -> None:
    link = Link(one_ms, delay_s=0.0)
    link.send(0.0, [1500, 700])  # opportunities at 1 and 2 ms (800 B of the 2nd wasted)
    link.send(0.005, [100])  # the opportunity at 5 ms
    assert link.offered_bytes == 3 * 1500 and link.departed_bytes == 2300


def test_input_validation(one_ms: Trace) -> None:
    link = Link(one_ms, delay_s=0.0)
    link.send(1.0, [100])
    with pytest.raises(ValueError, match="must not decrease"):
        link.send(0.5, [100])
    with pytest.raises(ValueError, match="last send"):
        link.queue_bytes_at(0.5)
    for bad in ([0], [-5], [1.5], [[1, 2]]):
        with pytest.raises(ValueError, match="positive integer"):
            link.send(2.0, bad)
    with pytest.raises(ValueError):
        Link(one_ms, delay_s=-1.0)
    with pytest.raises(ValueError):
        Link(one_ms, delay_s=0.0, queue_packets=0)


def test_empty_send(one_ms: Trace) -> None:
    ft = Link(one_ms, delay_s=0.0).send(0.0, [])
    assert ft.sizes.size == 0 and ft.complete and ft.first_arrival_s is None


# --------------------------------------------------------------------------- oracle
def _brute_force(trace: Trace, sends: list[tuple[float, list[int]]]) -> list[float]:
    """mahimahi's rationalize loop, one opportunity at a time (unlimited queue), in ms."""
    packets = [(t_ms, s) for t_ms, sizes in sends for s in sizes]
    departs: list[float] = []
    i, pkt, rem = 0, 0, 0.0
    while pkt < len(packets):
        t = float(trace.opportunity_time_s(i)) * 1000
        budget = trace.bytes_per_opportunity
        while budget > 1e-6 and pkt < len(packets):
            arrival, size = packets[pkt]
            if arrival > t + 1e-6:
                break
            rem = rem if rem > 0 else float(size)
            use = min(budget, rem)
            rem -= use
            budget -= use
            if rem <= 1e-6:
                departs.append(t)
                pkt, rem = pkt + 1, 0.0
        i += 1
    return departs


@settings(max_examples=60, deadline=None)
@given(
    opp=st.lists(st.integers(0, 20), min_size=1, max_size=8),
    bpo=st.sampled_from([1500.0, 1500 * 0.29, 1500 * 0.17, 600.0, 4000.0]),
    sends=st.lists(
        st.tuples(st.integers(0, 40), st.lists(st.integers(1, 3000), min_size=1, max_size=5)),
        min_size=1,
        max_size=6,
    ),
)
def test_matches_brute_force_mahimahi(
    opp: list[int], bpo: float, sends: list[tuple[int, list[int]]]
) -> None:
    opp = sorted(opp)
    period = max(opp[-1], 1)
    trace = Trace(np.array(opp, dtype=float), float(period), bytes_per_opportunity=bpo)
    # arrivals on a quarter-ms grid, non-decreasing
    times = np.cumsum([t for t, _ in sends]) / 4.0
    plan = [(float(t), sizes) for t, (_, sizes) in zip(times, sends, strict=True)]
    link = Link(trace, delay_s=0.0)
    got = np.concatenate([link.send(t / 1000, sizes).depart_s for t, sizes in plan]) * 1000
    assert np.allclose(got, _brute_force(trace, plan), rtol=0, atol=1e-6)


# --------------------------------------------------------------------------- performance
def test_performance_sanity() -> None:
    """18 000 frames x 10 packets over 600 s of LTE-like trace (printed, not asserted)."""
    link = Link(
        markov_cellular(1, 600.0), delay_s=0.02, queue_bytes=300_000,
        loss=GilbertElliott(0.01, 0.3, seed=1),
    )
    t0 = time.perf_counter()
    last = -1.0
    for f in range(18_000):
        ft = link.send(f / 30, [1200] * 10)
        d = ft.depart_s[~ft.dropped]
        assert d.size == 0 or (d[0] >= last and np.all(np.diff(d) >= 0))  # FIFO
        last = d[-1] if d.size else last
    elapsed = time.perf_counter() - t0
    print(f"\nlink: 18000 frames x 10 packets in {elapsed:.2f} s, "
          f"utilisation {link.utilisation:.3f}")
    assert link.delivered_bytes <= link.departed_bytes <= link.offered_bytes
    assert isinstance(NoLoss().lost(3), np.ndarray)
