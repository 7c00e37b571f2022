"""Two hosts in Linux network namespaces (a veth pair, 10.200.x.x/30 inside them only):
a shaped stream whose logs agree frame by frame, and the fault drill (receiver killed and
restarted, sender killed and resumed, a partition of a few seconds).

Namespaces need root; without them the shaped-stream test is skipped with the reason and the
fault drill runs on loopback (no partition there).
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from diffstream.live.accounting import fate
from diffstream.live.check import compare_dirs, received
from diffstream.live.logs import read_tail
from diffstream.live.security import create_keys
from diffstream.output.report import read_frames_jsonl
from tests.support.live_harness import (
    NetnsPair,
    Proc,
    netns_pair,
    netns_unavailable,
    partition,
    read_status,
    stream_dirs,
    wait_for,
)


@pytest.fixture(scope="module")
def netns_reason() -> str | None:
    return netns_unavailable()


@pytest.fixture
def hosts(netns_reason: str | None, request: pytest.FixtureRequest) -> Iterator[NetnsPair]:
    if netns_reason is not None:
        pytest.skip(netns_reason)
    index = 40 + (hash(request.node.name) % 200)
    with netns_pair(index) as pair:
        yield pair


def scenario(tmp: Path, **over: Any) -> Path:
    data: dict[str, Any] = {
        "name": "nslive", "seed": 2, "duration_s": 6.0,
        "frame": {"width": 64, "height": 64, "fps": 24},
        "content": {"source": "skimage", "shot_frames": 12},
        "mode": {"kind": "interactive", "target_latency_ms": 400},
        # 64x64 at 24 fps: 1 bpp = 98 kbit/s; the middle step is a ~1.5 bpp link. Trace
        # time is stream time, which starts when the receiver says hello
        "trace": {"kind": "steps", "steps": [[0, 0.4], [3, 0.15], [4.5, 0.4]],
                  "duration_s": 30},
        "link": {"share": 1.0, "delay_ms": 25, "queue": {"bytes": 40000}},
        "arms": [{"codec": "jpeg", "policy": {"kind": "rate"}}],
        "output": {"dir": "out", "plots": False},
        "live": {"heartbeat_ms": 300, "report_timeout_s": 5.0},
    }
    data.update(over)
    path = tmp / "ns.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.slow
def test_two_hosts_shaped_stream_logs_agree(tmp_path: Path, hosts: NetnsPair) -> None:
    """144 frames from host A to host B through the trace shaper: every frame on both
    logs, identical field by field; the link carries no more than the trace allows."""
    create_keys(tmp_path / "keys")
    ep = f"tcp://{hosts.addr_a}:5555"  # not loopback: CURVE is on by default
    send = Proc(["send", "--scenario", str(scenario(tmp_path)), "--bind", ep, "--shape",
                 "--keys", "keys/sender", "--out", "out/s", "--wait", "60"],
                tmp_path / "send.log", cwd=tmp_path, prefix=hosts.exec_prefix(hosts.a))
    recv = Proc(["recv", "--connect", ep, "--keys", "keys/receiver", "--out", "out/r",
                 "--wait", "60"], tmp_path / "recv.log", cwd=tmp_path,
                prefix=hosts.exec_prefix(hosts.b))
    try:
        assert recv.wait(90) == 0, recv.output()
        assert send.wait(30) == 0, send.output()
    finally:
        send.close()
        recv.close()
    sdir, rdir = stream_dirs(tmp_path / "out/s")[0], stream_dirs(tmp_path / "out/r")[0]
    assert read_status(sdir)["curve"] and read_status(rdir)["curve"]
    agreement = compare_dirs(sdir, rdir)
    assert agreement.ok, agreement.describe()
    records = read_frames_jsonl(sdir / "frames.jsonl")
    assert len(records) == 144 and agreement.compared_fully == 144
    # shaping: the trace's rate is in the records, and the emulated delay in every latency
    # the shaper starts the trace at frame 0's capture (as the simulator does): trace time
    c0 = records[0].capture_s
    slow = [r for r in records if 3.0 <= r.capture_s - c0 < 4.45]
    assert len(slow) > 20
    mean_capacity = statistics.mean(r.capacity_bps for r in slow)  # whole 1500 B chances
    assert abs(mean_capacity - 150e3) < 0.25 * 150e3, mean_capacity
    assert all(r.latency_s >= 0.025 for r in records if r.shown)
    # the link never carried more than the slow step allows (plus one queue of slack)
    t0 = 3.0 + c0
    window = [r for r in records if r.first_arrival_s is not None
              and t0 + 0.3 <= r.first_arrival_s < t0 + 1.5]
    carried = sum(r.delivered_bytes for r in window)
    assert carried <= 150e3 / 8 * 1.2 * 1.25 + 1500, carried
    # and the rate policy saw it through the receiver's reports
    fast = [r.budget_bits for r in records if 2.0 <= r.capture_s - c0 < 3.0]
    late_slow = [r.budget_bits for r in records if 3.8 <= r.capture_s - c0 < 4.5]
    assert statistics.median(late_slow) < 0.8 * statistics.median(fast)


# --------------------------------------------------------------------------- faults


def _last_received_seq(base: Path) -> int:
    dirs = stream_dirs(base)
    if not dirs:
        return -1
    tail = [r for r in read_tail(dirs[0] / "frames.jsonl", 50) if received(r)]
    return tail[-1].seq if tail else -1


@pytest.mark.slow
@pytest.mark.parametrize("where", ["netns", "loopback"])
def test_restarts_and_partition_every_frame_accounted(
    tmp_path: Path, where: str, netns_reason: str | None, request: pytest.FixtureRequest
) -> None:
    """Kill -9 the receiver mid-stream and start it again, then kill -9 the sender and
    resume it, then (namespaces only) cut the link for 3 s. After each fault the stream
    resumes; at the end every seq is in both logs once with the same fate, and the records
    of frames both sides saw agree field by field."""
    if where == "netns" and netns_reason is not None:
        pytest.skip(netns_reason)
    create_keys(tmp_path / "keys")
    sc = scenario(tmp_path, duration_s=40.0, trace={"kind": "constant", "mbps": 1.0,
                                                     "duration_s": 60},
                  arms=[{"codec": "jpeg", "policy": {"kind": "fixed", "bpp": 1.0}}])
    hosts_cm = (netns_pair(40 + hash(request.node.name) % 200) if where == "netns"
                else contextlib.nullcontext(None))
    with hosts_cm as net:
        ep = f"tcp://{net.addr_a if net else '127.0.0.1'}:{5600 if net else _free_port()}"
        curve = [] if net else ["--curve"]

        def start_send(*extra: str) -> Proc:
            return Proc(["send", "--scenario", str(sc), "--bind", ep, *curve, "--keys",
                         "keys/sender", "--out", "out/s", "--wait", "60", *extra],
                        tmp_path / "send.log", cwd=tmp_path,
                        prefix=net.exec_prefix(net.a) if net else None)

        def start_recv() -> Proc:
            return Proc(["recv", "--connect", ep, *curve, "--keys", "keys/receiver", "--out",
                         "out/r", "--wait", "60"], tmp_path / "recv.log", cwd=tmp_path,
                        prefix=net.exec_prefix(net.b) if net else None)

        def progressed(by: int) -> bool:
            seq = _last_received_seq(tmp_path / "out/r")
            # generous: a restart and reconnect are slow on a busy machine
            return wait_for(lambda: _last_received_seq(tmp_path / "out/r") >= seq + by, 90)

        send, recv = start_send(), start_recv()
        procs = [send, recv]
        try:
            assert progressed(40), recv.output()
            recv.kill()  # SIGKILL: no goodbye, no flush beyond what is already written
            recv = start_recv()
            procs.append(recv)
            assert progressed(40), recv.output()
            send.kill()
            send = start_send("--resume")
            procs.append(send)
            assert progressed(40), send.output()
            if net is not None:
                partition(net, down=True)
                time.sleep(3.0)
                partition(net, down=False)
                assert progressed(40), recv.output()
            assert send.wait(120) == 0, send.output()
            assert recv.wait(60) == 0, recv.output()
        finally:
            for p in procs:
                p.close()
    sdir, rdir = stream_dirs(tmp_path / "out/s"), stream_dirs(tmp_path / "out/r")
    assert len(sdir) == 1 and len(rdir) == 1  # one stream, continued across the restarts
    agreement = compare_dirs(sdir[0], rdir[0])
    assert agreement.ok, agreement.describe()
    records = read_frames_jsonl(sdir[0] / "frames.jsonl")
    assert [r.seq for r in records] == list(range(len(records)))
    fates = {fate(r) for r in records}
    assert fates <= {"delivered", "late", "lost"} and "lost" in fates
    assert sum(fate(r) == "delivered" for r in records) > 0.5 * len(records)
    rx = read_status(rdir[0])["counts"]
    assert rx.get("sender_restarts", 0) == 1
    assert "internal_errors" not in rx
    assert "internal_errors" not in read_status(sdir[0])["counts"]
    if net is not None:
        assert rx.get("reconnects", 0) >= 1  # the partition: same sender, new connection


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
