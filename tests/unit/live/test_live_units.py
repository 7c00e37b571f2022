"""Live mode pieces that need no network: protocol, replay window, clock offset, keys,
shaping, accounting, log comparison, configuration errors, logs, dashboard."""

from __future__ import annotations

import io
import math
import os
import random
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from diffstream.errors import ConfigError, InputError
from diffstream.live import protocol as P
from diffstream.live.accounting import fate, lost_rx, make_record, unseen_info
from diffstream.live.check import compare
from diffstream.live.clock import OffsetEstimator
from diffstream.live.logs import Journal, StreamState, read_tail
from diffstream.live.replay import SeqWindow
from diffstream.live.schema import load_live_scenario
from diffstream.live.security import (
    check_endpoint,
    create_keys,
    is_loopback,
    load_receiver_keys,
    load_sender_keys,
    want_curve,
)
from diffstream.live.shaping import TraceShaper
from diffstream.output.dashboard.live import LiveDashboard
from diffstream.output.report import append_frames_jsonl
from diffstream.scenario.build import build_link, build_trace
from diffstream.transport.packets import on_link_sizes

ROOT = Path(__file__).resolve().parents[3]


def frame_info(**over: Any) -> dict[str, Any]:
    info = unseen_info("a", "jpeg", "fixed", 1.0, 0.3)
    info.update(budget_bits=4000, payload_bytes=400, header_bytes=60, wire_bytes=500,
                frame_len=460, capacity_bps=1e6)
    info.update(over)
    return info


def report_body(**over: Any) -> dict[str, Any]:
    rx = lost_rx("")
    rx.update(first_arrival_s=1.05, last_arrival_s=1.05, delivered_bytes=500, complete=True,
              decoded=True, decode_done_s=1.06, shown=True, display_s=1.06,
              deadline_met=True, stall=False, psnr_db=30.0, ms_ssim=0.9, ssim=0.8,
              ssim_db=7.0)
    rx.update(over)
    return rx


# --------------------------------------------------------------------------- protocol


@pytest.mark.parametrize("kind,body,data", [
    (P.Kind.FRAME, frame_info(), b"DSF frame bytes"),
    (P.Kind.HELLO, {"name": "b", "proto": 1}, None),
    (P.Kind.REPORT, report_body(), None),
    (P.Kind.PING, {}, None),
    (P.Kind.PONG, {"t1": 1.0, "t2": 2.0}, None),
    (P.Kind.NEED, {"seqs": [1, 2, 3]}, None),
    (P.Kind.END, {"last_seq": 99}, None),
    (P.Kind.BYE, {"reason": "done"}, None),
])
def test_protocol_round_trip(kind: P.Kind, body: dict[str, Any], data: bytes | None) -> None:
    parts = P.encode(kind, 2**63 + 5, 7, 12.5, body, data)
    allowed = P.TO_RECEIVER if kind in P.TO_RECEIVER else P.TO_SENDER
    msg = P.decode(parts, allowed=allowed, max_data_bytes=1024)
    assert (msg.kind, msg.session, msg.seq, msg.sent_at) == (kind, 2**63 + 5, 7, 12.5)
    assert msg.body == body
    assert (bytes(msg.data) if msg.data is not None else None) == data


def _err(parts: list[Any], allowed: frozenset[P.Kind] = P.TO_RECEIVER, limit: int = 64) -> str:
    with pytest.raises(P.ProtocolError) as exc:
        P.decode(parts, allowed=allowed, max_data_bytes=limit)
    return exc.value.kind


def test_protocol_rejections_are_counted_by_kind() -> None:
    good = P.encode(P.Kind.FRAME, 1, 1, 0.0, frame_info(), b"x")
    assert _err(good[:1]) == "parts"
    assert _err([*good, b"extra"]) == "parts"
    assert _err([b"XYZ" + good[0][3:], *good[1:]]) == "bad_magic"
    assert _err([good[0][:3] + b"\x09" + good[0][4:], *good[1:]]) == "unknown_version"
    assert _err([good[0][:4] + b"\x63" + good[0][5:], *good[1:]]) == "unknown_kind"
    assert _err(good, allowed=P.TO_SENDER) == "unexpected"
    assert _err([good[0], good[1], b"y" * 65]) == "oversized"
    assert _err([good[0], b"\xc1", good[2]]) == "malformed"  # 0xc1 is never valid msgpack
    assert _err([good[0], msgpack.packb([1, 2]), good[2]]) == "malformed"
    bad = frame_info(budget_bits="many")
    assert _err(P.encode(P.Kind.FRAME, 1, 1, 0.0, bad, b"x")) == "malformed"
    bad = frame_info(capture_s=math.inf)
    assert _err(P.encode(P.Kind.FRAME, 1, 1, 0.0, bad, b"x")) == "malformed"
    missing = frame_info()
    del missing["wire_bytes"]
    assert _err(P.encode(P.Kind.FRAME, 1, 1, 0.0, missing, b"x")) == "malformed"
    big = {"seqs": list(range(P.MAX_LIST + 1))}
    assert _err(P.encode(P.Kind.NEED, 1, 1, 0.0, big)) == "malformed"
    huge = P.encode(P.Kind.BYE, 1, 1, 0.0, {"reason": "x" * (P.MAX_BODY_BYTES + 1)})
    assert _err(huge, allowed=P.TO_SENDER) == "oversized"
    assert _err([P.HEAD.pack(P.MAGIC, 1, 1, 0, 0, math.nan), good[1], good[2]]) == "malformed"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(parts=st.lists(st.binary(max_size=80), min_size=0, max_size=4),
       mutate=st.integers(0, 40), kind=st.sampled_from(list(P.Kind)))
def test_protocol_decode_only_raises_protocol_error(parts: list[bytes], mutate: int,
                                                    kind: P.Kind) -> None:
    """Random parts, and valid messages with one byte flipped: decoded or ProtocolError."""
    body = P.SCHEMAS[kind] and {k: 0 for k in P.SCHEMAS[kind]}
    valid = P.encode(kind, 3, 4, 1.0, body, b"data" if kind is P.Kind.FRAME else None)
    flipped = [bytearray(p) for p in valid]
    where = flipped[mutate % len(flipped)]
    if where:
        where[mutate % len(where)] ^= 0xA5
    for candidate in (parts, [bytes(p) for p in flipped]):
        for allowed in (P.TO_RECEIVER, P.TO_SENDER):
            try:
                P.decode(candidate, allowed=allowed, max_data_bytes=64)
            except P.ProtocolError as exc:
                assert exc.kind in P.ERROR_KINDS


# --------------------------------------------------------------------------- replay window


def test_replay_window() -> None:
    w = SeqWindow(size=8, max_jump=100)
    assert w.check(5) == "new"
    w.accept(5)
    assert w.check(5) == "replayed"
    assert w.check(4) == "out_of_order"  # never seen, but older than the highest
    assert w.check(6) == "new"
    assert w.check(5 + 101) == "too_far"
    w.accept(9)
    assert w.check(5) == "replayed" and w.check(7) == "out_of_order"
    w.accept(7)
    assert w.check(7) == "replayed"
    w.accept(30)  # slides the window past 5..9
    assert w.check(9) == "replayed" and w.check(22) == "replayed"  # older than the window
    assert w.check(25) == "out_of_order"
    w.resync(200)
    assert w.check(199) == "out_of_order" and w.check(200) == "new"


# --------------------------------------------------------------------------- clock


@settings(max_examples=200, deadline=None)
@given(theta=st.floats(-1e4, 1e4), fwd=st.lists(st.floats(1e-5, 0.5), min_size=1, max_size=30),
       back=st.lists(st.floats(1e-5, 0.5), min_size=30, max_size=30),
       hold=st.floats(0, 0.05))
def test_clock_offset_bound_holds_for_any_asymmetry(theta: float, fwd: list[float],
                                                     back: list[float], hold: float) -> None:
    """The true offset is always inside estimate +- bound, whatever the path delays."""
    est = OffsetEstimator(drift_ppm=0.0)
    t = 100.0
    for d1, d2 in zip(fwd, back, strict=False):
        t1 = t
        t2 = t1 + d1 + theta  # sender clock = receiver clock + theta
        t3 = t2 + hold
        t4 = t3 - theta + d2
        est.add(t1, t2, t3, t4)
        t = t4 + 0.5
    e = est.estimate(t)
    assert e is not None
    assert abs(e.theta - theta) <= e.bound + 1e-9 * max(1.0, abs(theta))
    best = min(d1 + d2 for d1, d2 in zip(fwd, back, strict=False))
    assert e.bound == pytest.approx(best / 2, rel=1e-6, abs=1e-9)


def test_clock_drift_widens_old_samples_and_rejects_nonsense() -> None:
    est = OffsetEstimator(window_s=100.0, drift_ppm=100.0)
    assert est.add(0.0, 5.0, 4.0, 1.0) is None  # answer sent before the probe was read
    est.add(0.0, 5.0005, 5.0005, 0.001)  # delta 1 ms
    assert est.estimate(0.001).bound == pytest.approx(0.0005, abs=1e-9)
    later = est.estimate(50.001)
    assert later.bound == pytest.approx(0.0005 + 100e-6 * 50, rel=1e-6)
    est.add(50.0, 55.001, 55.001, 50.002)  # delta 2 ms, but fresh: tighter after drift
    assert est.estimate(50.002).bound == pytest.approx(0.001, abs=1e-7)


# --------------------------------------------------------------------------- security


@pytest.mark.parametrize("endpoint,loop", [
    ("tcp://127.0.0.1:5555", True), ("tcp://127.9.9.9:1", True), ("tcp://localhost:5", True),
    ("tcp://[::1]:5555", True), ("ipc:///tmp/x", True), ("tcp://0.0.0.0:5555", False),
    ("tcp://*:5555", False), ("tcp://10.200.1.1:5555", False), ("tcp://host-a:5555", False),
    ("tcp://[2001:db8::1]:5555", False),
])
def test_loopback_decides_curve(endpoint: str, loop: bool) -> None:
    assert is_loopback(endpoint) is loop
    assert want_curve(endpoint, None) is (not loop)
    assert want_curve(endpoint, True) and not want_curve(endpoint, False)


def test_endpoint_errors_name_the_option() -> None:
    for bad in ("0.0.0.0:5555", "tcp://hostonly", "tcp://h:port"):
        with pytest.raises(InputError, match="--bind"):
            check_endpoint(bad, "--bind")
    assert check_endpoint("tcp://*:5555", "--bind")


def test_keys_layout_permissions_and_errors(tmp_path: Path) -> None:
    created = create_keys(tmp_path / "keys")
    assert len(created) == 6
    s = load_sender_keys(tmp_path / "keys" / "sender")
    r = load_receiver_keys(tmp_path / "keys" / "receiver")
    assert r.server_public == s.public and list(s.names.values()) == ["receiver"]
    assert r.public in s.names
    secret = tmp_path / "keys" / "receiver" / "receiver.key_secret"
    assert os.stat(secret).st_mode & 0o077 == 0
    with pytest.raises(InputError, match="exists"):
        create_keys(tmp_path / "keys")
    create_keys(tmp_path / "keys", "laptop")  # a second receiver, same sender key
    assert sorted(load_sender_keys(tmp_path / "keys" / "sender").names.values()) == [
        "laptop", "receiver"]
    assert load_receiver_keys(tmp_path / "keys" / "laptop").server_public == s.public
    with pytest.raises(InputError, match="sender.key_secret: not found"):
        load_sender_keys(tmp_path / "nowhere")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.key_secret").write_text("not a certificate")
    (tmp_path / "junk" / "sender.key").write_text("")
    with pytest.raises(InputError, match="x.key_secret"):
        load_receiver_keys(tmp_path / "junk")
    with pytest.raises(InputError, match="reserved"):
        create_keys(tmp_path / "keys", "sender")


# --------------------------------------------------------------------------- config


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.yaml"
    trace = ROOT / "scenarios" / "traces" / "lte_like.down"
    path.write_text(text.replace("TRACE", str(trace)))
    return path


BASE = """name: t
duration_s: 2
frame: {width: 64, height: 64, fps: 10}
trace: {kind: mahimahi, path: TRACE}
arms:
  - {codec: jpeg, policy: {kind: fixed}}
"""


def test_shipped_live_scenario_loads(tmp_path: Path) -> None:
    text = (ROOT / "scenarios" / "live.yaml").read_text()
    sc, _ = load_live_scenario(ROOT / "scenarios" / "live.yaml")
    assert sc.stream_arm.label == "jpeg-deadline" and not sc.live.shaping
    assert sc.compute.kind == "measured"  # live codec work takes the time it takes
    # the commented-out `live:` block documents the defaults: uncommented, it must be valid
    # and change nothing
    lines = text.splitlines()
    start = lines.index("# live:")
    block = [ln[2:] for ln in lines[start:] if ln.startswith("# ")]
    copy = tmp_path / "scenarios" / "live.yaml"
    copy.parent.mkdir()
    (copy.parent / "traces").symlink_to(ROOT / "scenarios" / "traces")
    copy.write_text("\n".join(lines[:start] + block) + "\n")
    sc2, _ = load_live_scenario(copy)
    assert sc2.live.model_copy(update={"arm": None}) == sc.live
    assert sc2.stream_arm == sc.stream_arm


@pytest.mark.parametrize("extra,message", [
    ("live: {shapng: true}\n", r"s.yaml:7: live.shapng: .*did you mean 'shaping'"),
    ("live: {hwm: 0}\n", r"s.yaml:7: live.hwm"),
    ("live: {arm: nope}\n", r"s.yaml:7: live.arm 'nope' is not one of"),
    ("mode: {kind: playback}\n", r"s.yaml:7: mode.kind: live mode streams interactively"),
])
def test_live_config_errors_name_file_line_field(tmp_path: Path, extra: str,
                                                  message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_live_scenario(_write(tmp_path, BASE + extra))


@pytest.mark.parametrize("kind", ["oracle", "optimal"])
def test_clairvoyant_policies_need_shaping(tmp_path: Path, kind: str) -> None:
    text = BASE.replace("{kind: fixed}", f"{{kind: {kind}}}")
    with pytest.raises(ConfigError, match=f"the {kind} policy reads the link's future"):
        load_live_scenario(_write(tmp_path, text))
    sc, _ = load_live_scenario(_write(tmp_path, text + "live: {shaping: true}\n"))
    assert sc.live.shaping


# --------------------------------------------------------------------------- shaping


def test_shaper_releases_frames_when_the_link_model_delivers_them(tmp_path: Path) -> None:
    text = BASE.replace("{kind: mahimahi, path: TRACE}",
                        "{kind: constant, mbps: 1.0, duration_s: 10}")
    text += "link: {share: 0.5, delay_ms: 40, queue: {bytes: 6000}}\n"
    sc, spath = load_live_scenario(_write(tmp_path, text))
    shaper = TraceShaper(sc, spath)
    ref = build_link(sc, build_trace(sc, spath).scaled(0.5))  # the same model, side by side
    released = []
    for k, size in enumerate([3000, 3000, 3000, 20000, 100]):
        now = k * 0.01
        fate_ = shaper.admit(now, size)
        t = ref.send(now, on_link_sizes(size, 1500))
        if t.complete:
            assert fate_.release_s >= t.last_arrival_s - 1e-9
            assert fate_.prefix_len == size and fate_.dropped == 0
        else:  # the drop-tail queue cut the big frame: only its surviving prefix goes out
            assert fate_.dropped == t.n_dropped > 0 and fate_.prefix_len < size
            assert fate_.prefix_len % 1460 == 0
        assert fate_.capacity_bps == pytest.approx(500e3, rel=0.1)  # whole opportunities
        released.append(fate_.release_s)
        assert shaper.hold(fate_.release_s, k)
    assert released == sorted(released)  # FIFO: never overtakes
    assert released[0] >= 3000 * 8 / 500e3 + 0.04 - 1e-6  # serialisation + delay
    assert shaper.due(released[0] - 1e-6) == [] and shaper.due(released[0])[0] == 0
    assert shaper.due(math.inf) == [k for k in range(5) if released[k] > released[0]]
    assert shaper.next_release() is None


def test_shaper_dates_a_frames_capacity_by_its_capture(tmp_path: Path) -> None:
    """The record's capacity is the trace's over [capture, capture + 1/fps), as the
    simulator logs it, not over the send time, which lags the capture by the encode (on a
    loaded machine 0.16 s was enough to misread the parity test's step trace)."""
    text = BASE.replace("{kind: mahimahi, path: TRACE}",
                        "{kind: steps, steps: [[0, 1.0], [7, 0.3]], duration_s: 20}")
    sc, spath = load_live_scenario(_write(tmp_path, text))
    shaper = TraceShaper(sc, spath)
    fps = sc.frame.fps
    capture = 7.0 - 1.0 / fps  # the last frame interval before the step
    late_send = shaper.admit(7.05, 1000, capture_s=capture)
    assert late_send.capacity_bps == shaper.capacity_bps(capture)
    assert late_send.capacity_bps > 2 * shaper.capacity_bps(7.05)  # the send is past it
    assert shaper.admit(7.1, 1000).capacity_bps == shaper.capacity_bps(7.1)  # default: now


# --------------------------------------------------------------------------- accounting


def test_records_from_both_halves_and_fates() -> None:
    rec = make_record(3, frame_info(), report_body())
    assert rec.seq == 3 and rec.latency_s == pytest.approx(0.06) and fate(rec) == "delivered"
    late = make_record(4, frame_info(), report_body(shown=False, display_s=None,
                                                     last_arrival_s=1.5, first_arrival_s=1.5))
    assert fate(late) == "late"
    lost = make_record(5, frame_info(capacity_bps=None), lost_rx("lost: no report"))
    assert fate(lost) == "lost" and math.isnan(lost.capacity_bps)


def test_compare_finds_every_kind_of_disagreement() -> None:
    sender = [make_record(k, frame_info(), report_body()) for k in range(5)]
    receiver = [make_record(k, frame_info(), report_body()) for k in range(5)]
    assert compare(sender, receiver).ok and compare(sender, receiver).compared_fully == 5
    receiver[2] = make_record(2, frame_info(), report_body(psnr_db=12.0))
    bad = compare(sender, receiver)
    assert not bad.ok and bad.field_mismatch[0][:2] == (2, "psnr_db")
    receiver[2] = make_record(2, frame_info(), report_body())
    sender[1] = make_record(1, frame_info(), lost_rx("lost: no report within 10 s"))
    assert compare(sender, receiver).fate_mismatch == [(1, "lost", "delivered")]
    assert compare(sender[:1] + sender[2:], receiver).seq_gaps["sender"] == [1]
    assert compare(sender + sender[-1:], receiver).duplicates["sender"] == [4]


# --------------------------------------------------------------------------- logs


def test_log_tail_skips_a_torn_line_and_journal_compacts(tmp_path: Path) -> None:
    path = tmp_path / "frames.jsonl"
    append_frames_jsonl(path, [make_record(k, frame_info(), report_body()) for k in range(50)])
    with path.open("a") as fh:
        fh.write('{"seq": 50, "arm"')  # a crash mid-line
    tail = read_tail(path, 5)
    assert [r.seq for r in tail] == [45, 46, 47, 48, 49]
    j = Journal(tmp_path, compact_every=10)
    for k in range(12):
        j.add(k, {"send_s": float(k), "capacity_bps": math.nan})
    j.maybe_compact([(11, {"send_s": 11.0})])
    j.add(12, {"send_s": 12.0})
    j.close()
    assert Journal.read(tmp_path) == {11: {"send_s": 11.0}, 12: {"send_s": 12.0}}
    st = StreamState("id", "n", "a", epoch_wall=0.0, epoch_mono=0.0)
    st.save(tmp_path)
    assert StreamState.load(tmp_path) == st
    assert StreamState.load(tmp_path / "none") is None


# --------------------------------------------------------------------------- dashboard


def test_live_dashboard_renders_and_prints_plain_lines() -> None:
    status = {"receiver": "b: connected", "clock": "latency ±0.20 ms"}
    sink = io.StringIO()
    dash = LiveDashboard("t sender", "a", 20, live=False, status=lambda: status, every_s=0.0,
                         console=Console(file=sink, width=200))
    rng = random.Random(1)
    for k in range(20):
        shown = rng.random() < 0.8
        rx = report_body() if shown else lost_rx("lost")
        dash.on_frame(make_record(k, frame_info(capture_s=k * 0.1, deadline_s=k * 0.1 + 0.3),
                                  rx))
    out = sink.getvalue()
    assert "frames 20/20" in out and "receiver b: connected" in out
    rec = Console(record=True, width=140, file=io.StringIO())
    rec.print(dash.render())
    text = rec.export_text()
    assert "live" in text and "stream time" in text and "latency ±0.20 ms" in text


def test_replayed_report_keeps_the_logged_throughput_sample() -> None:
    """A restarted receiver re-sends REPORTs built from its log (``rx_of``); the sender's
    record of that frame must get the same throughput sample the receiver logged (a CI run
    saw ``throughput_bps: sender None != receiver 11648000.0`` after a receiver restart)."""
    from diffstream.live.receiver import rx_of

    logged = make_record(40, frame_info(), report_body(throughput_bps=11_648_000.0))
    replayed = rx_of(logged)
    assert replayed["throughput_bps"] == 11_648_000.0
    assert make_record(40, frame_info(), replayed) == logged
