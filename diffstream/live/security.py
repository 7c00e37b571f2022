"""CURVE certificates and authentication (pyzmq's ``zmq.auth``).

``python -m diffstream keys`` lays the certificates out so that each machine gets one folder:

    keys/sender/sender.key_secret          sender keypair            stays on machine A
    keys/sender/sender.key                 sender public key
    keys/sender/authorized/receiver.key    receivers allowed in      (allow-list, on A)
    keys/receiver/receiver.key_secret      receiver keypair          copy to machine B
    keys/receiver/sender.key               sender public key         copy to machine B

The sender is the CURVE server: a ZAP handler (pyzmq's ``ThreadAuthenticator``) admits only
clients whose public key is in ``authorized/``; anyone else fails the handshake and never
gets a message through in either direction. The receiver is the CURVE client: it must know
the sender's public key, so it cannot be fooled into talking to another server. CURVE also
encrypts and authenticates every message (and its nonces defeat replays on the wire).

CURVE is on by default for every non-loopback endpoint. On loopback (127.0.0.0/8, ::1,
localhost, ipc://, inproc://) it is off unless asked for: the traffic never leaves the
machine, but any local user can then connect, so pass ``--curve`` on a shared machine.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from diffstream.errors import InputError

SENDER_NAME = "sender"
ZAP_DOMAIN = "diffstream"


def endpoint_host(endpoint: str) -> str | None:
    """The host of ``tcp://HOST:PORT`` (brackets stripped), None for other transports."""
    if not endpoint.startswith("tcp://"):
        return None
    rest = endpoint[len("tcp://"):]
    if rest.startswith("["):
        return rest[1:rest.find("]")] if "]" in rest else rest[1:]
    host = rest.rsplit(":", 1)[0] if ":" in rest else rest
    return host.split(";")[-1]  # zmq's "tcp://src;dst:port" form: the destination counts


def is_loopback(endpoint: str) -> bool:
    """True when traffic on ``endpoint`` never leaves this machine."""
    if endpoint.startswith(("ipc://", "inproc://")):
        return True
    host = endpoint_host(endpoint)
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name or an interface: assume it is reachable from outside


def want_curve(endpoint: str, curve: bool | None) -> bool:
    """``curve``: True/False forced by the user, None = on unless loopback."""
    return (not is_loopback(endpoint)) if curve is None else curve


def check_endpoint(endpoint: str, option: str) -> str:
    """Reject endpoints zmq would not accept, with the option's name in the message."""
    if not endpoint.startswith(("tcp://", "ipc://", "inproc://")):
        raise InputError(f"{option} {endpoint!r}: expected tcp://HOST:PORT (or ipc://PATH)")
    if endpoint.startswith("tcp://"):
        port = endpoint.rsplit(":", 1)[-1]
        if ":" not in endpoint[len("tcp://"):] or not (port.isdigit() or port == "*"):
            raise InputError(f"{option} {endpoint!r}: missing port, e.g. tcp://0.0.0.0:5555")
    return endpoint


# --------------------------------------------------------------------------- create


def _secure_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def _make_pair(dest: Path, name: str) -> tuple[Path, Path]:
    """Create ``dest/name.key`` and ``dest/name.key_secret`` (mode 600)."""
    _secure_dir(dest)
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        public, secret = zmq.auth.create_certificates(tmp, name)
        out_pub, out_sec = dest / f"{name}.key", dest / f"{name}.key_secret"
        shutil.move(public, out_pub)
        shutil.move(secret, out_sec)
    os.chmod(out_sec, 0o600)
    return out_pub, out_sec


def create_keys(out: Path, receiver: str = "receiver", *, force: bool = False) -> list[Path]:
    """Create the sender's keypair (kept if it exists) and one receiver's; returns new files.

    The receiver's public key goes into ``out/sender/authorized`` and the sender's public key
    into the receiver's folder, which is then all machine B needs.
    """
    if not receiver or not receiver.replace("-", "").replace("_", "").isalnum():
        raise InputError(f"--receiver {receiver!r}: use letters, digits, '-' or '_'")
    if receiver == SENDER_NAME:
        raise InputError("--receiver: 'sender' is reserved for the sender's own keys")
    created: list[Path] = []
    sdir, rdir = out / SENDER_NAME, out / receiver
    spub, ssec = sdir / f"{SENDER_NAME}.key", sdir / f"{SENDER_NAME}.key_secret"
    if force or not ssec.exists():
        created += _make_pair(sdir, SENDER_NAME)
    rsec = rdir / f"{receiver}.key_secret"
    if rsec.exists() and not force:
        raise InputError(f"{rsec} exists; pass --force to replace it, or pick another --receiver")
    created += _make_pair(rdir, receiver)
    authorized = sdir / "authorized"
    _secure_dir(authorized)
    shutil.copyfile(rdir / f"{receiver}.key", authorized / f"{receiver}.key")
    shutil.copyfile(spub, rdir / f"{SENDER_NAME}.key")
    created += [authorized / f"{receiver}.key", rdir / f"{SENDER_NAME}.key"]
    return created


# --------------------------------------------------------------------------- load

_HINT = "create keys with `python -m diffstream keys` (see docs/live.md)"


@dataclass(frozen=True)
class SenderKeys:
    public: bytes
    secret: bytes
    authorized: Path
    names: dict[bytes, str]  # z85 public key -> certificate name, for the dashboard


@dataclass(frozen=True)
class ReceiverKeys:
    public: bytes
    secret: bytes
    server_public: bytes
    name: str


def _load(path: Path, *, secret: bool) -> tuple[bytes, bytes | None]:
    if not path.is_file():
        raise InputError(f"{path}: not found; {_HINT}")
    try:
        public, sec = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a CURVE certificate ({exc}); {_HINT}") from None
    if secret and not sec:
        raise InputError(f"{path}: holds no secret key; {_HINT}")
    if public is None or len(public) != 40:
        raise InputError(f"{path}: public key is not a 40-character Z85 key; {_HINT}")
    return public, sec


def load_sender_keys(folder: Path) -> SenderKeys:
    public, secret = _load(folder / f"{SENDER_NAME}.key_secret", secret=True)
    authorized = folder / "authorized"
    keys = sorted(authorized.glob("*.key")) if authorized.is_dir() else []
    if not keys:
        raise InputError(f"{authorized}: no receiver public keys (*.key) allowed in; {_HINT}")
    names = {_load(k, secret=False)[0]: k.stem for k in keys}
    assert secret is not None
    return SenderKeys(public, secret, authorized, names)


def load_receiver_keys(folder: Path) -> ReceiverKeys:
    secrets = sorted(folder.glob("*.key_secret")) if folder.is_dir() else []
    if len(secrets) != 1:
        what = "no" if not secrets else f"{len(secrets)}"
        raise InputError(f"{folder}: {what} *.key_secret files, expected exactly one; {_HINT}")
    public, secret = _load(secrets[0], secret=True)
    server, _ = _load(folder / f"{SENDER_NAME}.key", secret=False)
    assert secret is not None
    return ReceiverKeys(public, secret, server, secrets[0].name.removesuffix(".key_secret"))


# --------------------------------------------------------------------------- apply


def make_server(sock: zmq.Socket, keys: SenderKeys) -> None:
    sock.curve_secretkey = keys.secret
    sock.curve_publickey = keys.public
    sock.curve_server = True
    sock.zap_domain = ZAP_DOMAIN.encode()


def make_client(sock: zmq.Socket, keys: ReceiverKeys) -> None:
    sock.curve_secretkey = keys.secret
    sock.curve_publickey = keys.public
    sock.curve_serverkey = keys.server_public


def start_authenticator(ctx: zmq.Context, keys: SenderKeys) -> ThreadAuthenticator:
    """ZAP handler admitting exactly the public keys in ``keys.authorized``."""
    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve(domain=ZAP_DOMAIN, location=str(keys.authorized))
    return auth
