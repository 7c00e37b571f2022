"""Item 4: with --transport tcp, other local processes cannot talk to a run's workers."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import zmq

from diffstream.scenario.load import load_scenario
from diffstream.sim.endpoints import WorkerEndpoints
from diffstream.sim.messages import dumps
from tests.conftest import tiny_scenario


def _endpoint(sock: zmq.Socket) -> str:
    return sock.getsockopt(zmq.LAST_ENDPOINT).decode()


@pytest.mark.slow  # two worker processes start (torch): 10-20 s on 2 cores
def test_a_local_process_cannot_stop_or_rob_a_tcp_run(tmp_path: Path) -> None:
    """An intruder connects to the coordinator's three ports: it pushes {"op": "fatal"}
    into the results socket, pulls on the frames socket and answers on the request socket.
    Before the fix the fatal message ended the run; now none of its sockets gets past the
    CURVE handshake and the arm completes."""
    sc, spath = load_scenario(tiny_scenario(tmp_path, duration_s=1.0))
    ep = WorkerEndpoints(sc, spath.parent, transport="tcp", timeout_s=30)
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    steal = ctx.socket(zmq.PULL)
    rep = ctx.socket(zmq.REP)
    for s, target in ((push, ep.pull), (steal, ep.push), (rep, ep.req)):
        s.setsockopt(zmq.LINGER, 0)
        s.connect(_endpoint(target))
    try:
        push.send(dumps({"op": "fatal", "message": "injected"}), flags=zmq.NOBLOCK)
        time.sleep(0.3)
        ep.start_arm("jpeg-fixed", "jpeg", {}, False)
        for k in range(5):
            reply = ep.encode("jpeg-fixed", k, 20_000, k * 0.1, k * 0.1)
            frame = reply["frame"]
            ep.deliver({"op": "frame", "arm": "jpeg-fixed", "seq": k, "frame_len": len(frame),
                        "chunks": [[0, frame, k * 0.1 + 0.05]], "deadline_s": k * 0.1 + 0.3})
        results, malformed = ep.finish_arm("jpeg-fixed")
        stolen = steal.poll(0)
    finally:
        ep.close()
        for s in (push, steal, rep):
            s.close(0)
        ctx.term()
    assert [r["seq"] for r in results] == list(range(5)) and malformed == 0
    assert all(r["decoded"] for r in results)
    assert not stolen


def test_only_holders_of_the_run_key_get_through() -> None:
    """The coordinator's sockets (CURVE servers with a per-run key) accept a worker that got
    the key in its environment, and nothing from a plain client or a client with another
    server key: the intruder's fatal message never arrives."""
    from diffstream.sim.secure import RunKey, join, serve

    key = RunKey.new()
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    serve(pull, key)
    port = pull.bind_to_random_port("tcp://127.0.0.1")
    socks = []
    for env in ({}, RunKey.new().env(), key.env()):  # plain, wrong key, the run's key
        s = ctx.socket(zmq.PUSH)
        s.setsockopt(zmq.LINGER, 0)
        join(s, env)
        s.connect(f"tcp://127.0.0.1:{port}")
        socks.append(s)
    try:
        for i, s in enumerate(socks):
            s.send(dumps({"op": "fatal" if i < 2 else "result", "from": i}), copy=True)
        got = []
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            if pull.poll(100):
                got.append(pull.recv())
        assert got == [dumps({"op": "result", "from": 2})]
    finally:
        for s in (*socks, pull):
            s.close(0)
        ctx.term()
