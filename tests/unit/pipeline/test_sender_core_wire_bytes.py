"""``Observation.wire_bytes`` as ``SenderCore.observe`` builds it (inline arithmetic, for the
policies' searches) equals ``transport.packets.wire_bytes_for_payload`` everywhere,
packet boundaries included, and rejects what it rejects."""

from __future__ import annotations

from pathlib import Path

import pytest

from diffstream.pipeline.encoder import ArmInfo, EncodedFrame
from diffstream.pipeline.sender_core import SenderCore
from diffstream.scenario.load import load_scenario
from diffstream.transport.packets import chunk_size, wire_bytes_for_payload
from tests.conftest import tiny_scenario


@pytest.mark.parametrize("mtu", [576, 1500, 9000])
@pytest.mark.parametrize("header", [0, 1, 57, 90])
def test_inline_wire_bytes_matches_the_checked_function(tmp_path: Path, mtu: int,
                                                        header: int) -> None:
    sc, _ = load_scenario(tiny_scenario(tmp_path, link={"share": 0.05, "delay_ms": 20,
                                                        "mtu": mtu}))
    core = SenderCore(sc, sc.arms[0], ArmInfo(min_bits=0, progressive=False, rq=None,
                                              header_bytes=header))
    wire = core.observe(0, 0.0, 0.0, 0.3).wire_bytes
    chunk = chunk_size(mtu)
    # every bit count around the first packet boundaries, then a sweep of large ones
    edges = [8 * (k * chunk - header) + d for k in range(1, 4) for d in range(-9, 10)]
    for bits in [0, 1, 7, 8, 9, *[b for b in edges if b >= 0], *range(0, 2_000_000, 9973)]:
        assert wire(bits) == float(wire_bytes_for_payload(bits, header, mtu)), bits
    with pytest.raises(ValueError):
        wire(-1)


def test_header_refresh_reaches_the_inline_path(tmp_path: Path) -> None:
    sc, _ = load_scenario(tiny_scenario(tmp_path))
    core = SenderCore(sc, sc.arms[0], ArmInfo(min_bits=0, progressive=False, rq=None,
                                              header_bytes=40))

    def encoded(header: int, skipped: bool) -> EncodedFrame:
        return EncodedFrame(frame=b"", payload_bytes=0, header_bytes=header, skipped=skipped,
                            reason="", steps=1, encode_ms=0.0, encode_charged_s=0.0,
                            send_s=0.0)

    core.on_encoded(encoded(1460, skipped=False))
    obs = core.observe(1, 0.1, 0.1, 0.4)
    assert obs.wire_bytes(800) == wire_bytes_for_payload(800, 1460, core.mtu)
    assert obs.wire_bytes(0) == wire_bytes_for_payload(0, 40, core.mtu)  # no skip seen yet
    # a skipped frame's (smaller) header sets the header-only frame's bytes, not a coded one's
    core.on_encoded(encoded(25, skipped=True))
    obs = core.observe(2, 0.2, 0.2, 0.5)
    assert obs.wire_bytes(0) == wire_bytes_for_payload(0, 25, core.mtu)
    assert obs.wire_bytes(800) == wire_bytes_for_payload(800, 1460, core.mtu)
