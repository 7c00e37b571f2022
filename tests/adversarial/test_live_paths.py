"""Item 1: a sender cannot make the receiver write outside the receiver's own folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from diffstream.live import protocol as P
from tests.adversarial.helpers import FakeSender, receiver


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


BAD_IDS = ["../evil", "a/../../evil", "..", ".", ".hidden", "-rf", "a\\b", "x" * 65, "", "é"]


def test_stream_id_cannot_choose_a_path(tmp_path: Path) -> None:
    """The issue's repro: WELCOME with stream_id "/tmp/evil" (here under tmp_path), then
    END; and the other ways to spell a path. The receiver refuses each WELCOME (counted)
    and writes nothing anywhere, let alone outside --out."""
    evil = tmp_path / "evil"
    ids = [str(evil), "../evil", "a/../../evil"]
    fake = FakeSender(tmp_path)
    rx, bg = receiver(fake.endpoint, tmp_path / "rx" / "inner", wait_s=None)
    try:
        for sid in ids:  # the receiver says hello again every second: a new id each time
            fake.handshake(timeout_s=30, wait_ping=False, stream_id=sid)
        fake.end(-1)
        fake.recv(0.5)
        assert rx.stream is None  # no stream was set up from any of them
    finally:
        rx.stopping = True
        bg.join(30)
        fake.close()
    assert not _files(evil) and not (tmp_path / "rx").exists()
    assert rx.counts["dropped_malformed"] == len(ids)
    assert [p for p in _files(tmp_path) if p.suffix != ".yaml"] == []


@pytest.mark.parametrize("sid", BAD_IDS)
def test_welcome_schema_refuses_path_like_ids(tmp_path: Path, sid: str) -> None:
    from diffstream.live.paths import stream_folder

    fake = FakeSender(tmp_path)
    try:
        body = fake.welcome_body(0.0, 0.0, stream_id=sid)
    finally:
        fake.close()
    with pytest.raises(P.ProtocolError, match="stream_id"):
        P.check_body(P.Kind.WELCOME, body)
    with pytest.raises(ValueError):
        stream_folder(tmp_path, sid)


def test_receiver_never_takes_its_output_folder_from_the_sender(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --out the receiver writes under its own cwd (runs/<name>/receiver), not
    under the sender's output.dir, even when that is an absolute path."""
    chosen = tmp_path / "sender_chose_this"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    fake = FakeSender(tmp_path, output_dir=str(chosen))
    rx, bg = receiver(fake.endpoint, None, wait_s=30.0)
    try:
        fake.handshake(timeout_s=30)
        fake.end(-1)
        assert bg.join(30) == 0
    finally:
        rx.stopping = True
        fake.close()
    assert not chosen.exists()
    written = _files(cwd)
    assert written and all(p.is_relative_to(cwd / "runs" / "advlive" / "receiver" / "advstream")
                           for p in written), written


CANARY = '''
import pathlib, os
pathlib.Path(os.environ["DIFFSTREAM_CANARY"]).write_text("imported")
from diffstream.codecs.classic.pillow import JpegCodec as Codec
'''


@pytest.mark.parametrize("allowed", [False, True])
def test_sender_cannot_make_the_receiver_import_a_module(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, allowed: bool) -> None:
    """A WELCOME scenario naming a plugin by import path would import (run) that module on
    the receiver. It is refused unless the receiver's user allowed that reference."""
    import sys

    (tmp_path / "canary_plugin.py").write_text(CANARY)
    marker = tmp_path / "imported.txt"
    monkeypatch.setenv("DIFFSTREAM_CANARY", str(marker))
    monkeypatch.syspath_prepend(str(tmp_path))
    ref = "canary_plugin:Codec"
    fake = FakeSender(tmp_path)
    scenario = fake.sc.model_dump(mode="json")
    scenario["arms"][0]["codec"] = ref
    rx, bg = receiver(fake.endpoint, tmp_path / "rx", wait_s=None,
                      allow_plugins=(ref,) if allowed else ())
    try:
        fake.handshake(timeout_s=30, wait_ping=False, scenario=scenario)
        fake.recv(1.0)
    finally:
        rx.stopping = True
        bg.join(30)
        fake.close()
        sys.modules.pop("canary_plugin", None)
    assert marker.exists() is allowed
    assert (rx.counts["dropped_plugin_refused"] >= 1) is not allowed
