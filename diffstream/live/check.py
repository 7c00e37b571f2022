"""Do the sender's and the receiver's logs of one stream agree? ``python -m diffstream.live.check
SENDER_STREAM_DIR RECEIVER_STREAM_DIR`` prints the answer (exit 1 when they do not).

Accounting: every seq from the first to the last appears exactly once on each side, and each
frame has the same fate on both (``accounting.fate``: delivered / late / lost). Where both
halves of a frame reached both sides (the receiver got the frame, the sender got its report),
the two records must be identical field for field. Where the frame never reached the
receiver, only the fate is compared (each side knows a different half).
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

from diffstream.live.accounting import fate
from diffstream.output.report import FRAMES_NAME, read_frames_jsonl
from diffstream.pipeline.records import RECEIVER_FIELDS, FrameRecord


@dataclass
class Agreement:
    frames: int
    fates: dict[str, int]
    seq_gaps: dict[str, list[int]] = field(default_factory=dict)  # side -> missing seqs
    duplicates: dict[str, list[int]] = field(default_factory=dict)
    only_one_side: list[int] = field(default_factory=list)
    fate_mismatch: list[tuple[int, str, str]] = field(default_factory=list)
    field_mismatch: list[tuple[int, str, object, object]] = field(default_factory=list)
    compared_fully: int = 0

    @property
    def ok(self) -> bool:
        return not (any(self.seq_gaps.values()) or any(self.duplicates.values())
                    or self.only_one_side or self.fate_mismatch or self.field_mismatch)

    def describe(self) -> str:
        lines = [f"{self.frames} frames, fates {self.fates}; {self.compared_fully} compared "
                 "field by field"]
        for side, gaps in self.seq_gaps.items():
            if gaps:
                lines.append(f"{side}: {len(gaps)} seqs missing, e.g. {gaps[:10]}")
        for side, dup in self.duplicates.items():
            if dup:
                lines.append(f"{side}: {len(dup)} seqs twice, e.g. {dup[:10]}")
        if self.only_one_side:
            lines.append(f"{len(self.only_one_side)} seqs on one side only, e.g. "
                         f"{self.only_one_side[:10]}")
        for seq, a, b in self.fate_mismatch[:10]:
            lines.append(f"seq {seq}: sender says {a}, receiver says {b}")
        for seq, name, a, b in self.field_mismatch[:10]:
            lines.append(f"seq {seq}: {name}: sender {a!r} != receiver {b!r}")
        lines.append("logs agree" if self.ok else "logs DISAGREE")
        return "\n".join(lines)


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def _check_seqs(records: list[FrameRecord]) -> tuple[list[int], list[int]]:
    seqs = sorted(r.seq for r in records)
    dup = sorted({s for s, t in zip(seqs, seqs[1:], strict=False) if s == t})
    gaps = sorted(set(range(seqs[0], seqs[-1] + 1)) - set(seqs)) if seqs else []
    return gaps, dup


def received(r: FrameRecord) -> bool:
    """The receiver logged this frame from the frame itself (not as a gap it never saw)."""
    return not r.error.startswith("lost: never received")


def reported(r: FrameRecord) -> bool:
    """The sender logged this frame from the receiver's report (not a local verdict)."""
    return not r.error.startswith(("lost: no ", "lost: send", "lost: receiver unreachable",
                                   "lost: shaping"))


def compare(sender: list[FrameRecord], receiver: list[FrameRecord]) -> Agreement:
    s_by = {r.seq: r for r in sender}
    r_by = {r.seq: r for r in receiver}
    both = sorted(set(s_by) & set(r_by))
    out = Agreement(frames=len(set(s_by) | set(r_by)), fates={})
    for side, recs in (("sender", sender), ("receiver", receiver)):
        gaps, dup = _check_seqs(recs)
        out.seq_gaps[side], out.duplicates[side] = gaps, dup
    # the receiver may have joined late, but it must run to the sender's end
    out.only_one_side = sorted(set(r_by) - set(s_by))
    if receiver:
        first = min(r_by)
        out.only_one_side += sorted(s for s in s_by if s >= first and s not in r_by)
    for seq in sorted(s_by):
        f = fate(s_by[seq])
        out.fates[f] = out.fates.get(f, 0) + 1
    for seq in both:
        a, b = s_by[seq], r_by[seq]
        fa, fb = fate(a), fate(b)
        if fa != fb:
            out.fate_mismatch.append((seq, fa, fb))
            continue
        if received(b) and reported(a):
            out.compared_fully += 1
            names = a.to_dict().keys()
        elif reported(a):  # a gap frame the receiver reported: its half must match
            names = RECEIVER_FIELDS
        else:
            continue
        for name in names:
            va, vb = getattr(a, name), getattr(b, name)
            if not _same(va, vb):
                out.field_mismatch.append((seq, name, va, vb))
    return out


def compare_dirs(sender_dir: Path, receiver_dir: Path) -> Agreement:
    return compare(read_frames_jsonl(sender_dir / FRAMES_NAME),
                   read_frames_jsonl(receiver_dir / FRAMES_NAME))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m diffstream.live.check", description=__doc__)
    p.add_argument("sender_dir", type=Path, help="the sender's OUT/<stream id>/")
    p.add_argument("receiver_dir", type=Path, help="the receiver's OUT/<stream id>/")
    args = p.parse_args(argv)
    for d in (args.sender_dir, args.receiver_dir):
        if not (d / FRAMES_NAME).is_file():
            print(f"error: {d / FRAMES_NAME} not found", file=sys.stderr)
            return 2
    result = compare_dirs(args.sender_dir, args.receiver_dir)
    print(result.describe())
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
