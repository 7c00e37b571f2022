"""Who may talk to a simulated run's worker sockets.

With ``--transport tcp`` the coordinator binds three ports on 127.0.0.1, and any local
process could connect to them: push ``{"op": "fatal"}`` and stop the run, or take frames
off the coordinator's PUSH socket. So these sockets run CURVE with a keypair made for this
run only: the coordinator is the CURVE server, and a client can complete the handshake only
if it knows the server's public key, which is the per-run secret. It reaches the two
workers in their environment (``/proc/PID/environ`` is readable by the same user only),
never on the command line. Other local users cannot connect; the same user could read the
key, or ptrace the processes, and is not defended against. ipc sockets need none of this:
they live in a private 0700 temporary folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import zmq

ENV_KEY = "DIFFSTREAM_WORKER_KEY"


@dataclass(frozen=True)
class RunKey:
    public: bytes
    secret: bytes

    @classmethod
    def new(cls) -> RunKey:
        public, secret = zmq.curve_keypair()
        return cls(public, secret)

    def env(self) -> dict[str, str]:
        """What a worker's environment needs to connect."""
        return {ENV_KEY: self.public.decode("ascii")}


def serve(sock: zmq.Socket, key: RunKey) -> None:
    """Make ``sock`` (bind it afterwards) a CURVE server for this run."""
    sock.curve_secretkey = key.secret
    sock.curve_publickey = key.public
    sock.curve_server = True


def join(sock: zmq.Socket, environ: dict[str, str] | None = None) -> None:
    """In a worker: CURVE client of the coordinator when it passed a run key (tcp)."""
    server = (environ if environ is not None else os.environ).get(ENV_KEY)
    if not server:
        return
    public, secret = zmq.curve_keypair()
    sock.curve_publickey, sock.curve_secretkey = public, secret
    sock.curve_serverkey = server.encode("ascii")
