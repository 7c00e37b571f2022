"""The example scenarios and traces shipped inside the package (``diffstream/examples/``).

They are package data, so an installed diffstream (a wheel, no repository) can run them:
``diffstream run --example lte_trace``, or copy them out to edit with
``diffstream examples --out DIR``. In a checkout the top-level ``scenarios/`` is a symlink
to the same folder, so ``python run_sim.py scenarios/lte_trace.yaml`` is unchanged. Trace
paths inside a scenario are relative to the scenario's folder, which is why the traces
travel with the scenarios (``traces/``) and are copied out together.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from diffstream.errors import InputError

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"
TRACES = "traces"


@dataclass(frozen=True)
class Example:
    name: str
    path: Path
    description: str


def example_files() -> list[Path]:
    """Every shipped file, scenarios and traces, relative to ``EXAMPLES_DIR``."""
    if not EXAMPLES_DIR.is_dir():
        raise InputError(f"the example scenarios are missing from this installation "
                         f"({EXAMPLES_DIR}); reinstall diffstream")
    return sorted(p.relative_to(EXAMPLES_DIR) for p in EXAMPLES_DIR.rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts)


def examples() -> list[Example]:
    """The example scenarios (and sweeps), by name, with their ``description:`` line."""
    out = []
    for path in sorted(EXAMPLES_DIR.glob("*.yaml")):
        try:
            text = path.read_text(encoding="utf-8")
            data = yaml.safe_load(text) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            text, data = "", {}
        desc = str(data.get("description") or "") if isinstance(data, dict) else ""
        if not desc:  # no description: field; the file's first comment line says what it is
            first = next((ln for ln in text.splitlines() if ln.startswith("#")), "")
            desc = first.lstrip("# ").strip()
        out.append(Example(path.stem, path, desc))
    return out


def example_path(name: str) -> Path:
    """The shipped scenario called ``name`` (with or without ``.yaml``); InputError listing
    the examples otherwise."""
    stem = name[:-5] if name.endswith(".yaml") else name
    known = {e.name: e.path for e in examples()}
    if stem not in known:
        raise InputError(f"--example: unknown example {name!r}; the examples are: "
                         f"{', '.join(sorted(known))} (`diffstream examples --list` describes "
                         "them)")
    return known[stem]


def copy_examples(dest: Path, overwrite: bool = False) -> list[Path]:
    """Copy every shipped scenario and trace into ``dest`` (same layout, so the scenarios'
    relative trace paths still hold). Refuses, before copying anything, when a file would
    be replaced, unless ``overwrite``. Returns the files written."""
    dest = Path(dest).expanduser()
    if dest.exists() and not dest.is_dir():
        raise InputError(f"--out {dest}: is a file, not a folder; give a folder path")
    files = example_files()
    clash = [rel for rel in files if (dest / rel).exists() or (dest / rel).is_symlink()]
    if clash and not overwrite:
        shown = ", ".join(str(dest / rel) for rel in clash[:5])
        more = f" and {len(clash) - 5} more" if len(clash) > 5 else ""
        raise InputError(f"--out {dest}: {len(clash)} example file(s) already exist ({shown}"
                         f"{more}); pass --overwrite to replace them, or choose another folder")
    bad = [rel for rel in clash if (dest / rel).is_dir()]
    if bad:
        raise InputError(f"--out {dest}: {dest / bad[0]} is a folder where an example file "
                         "goes; move it away")
    written = []
    try:
        for rel in files:
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_symlink():  # replace the link itself, never write through it
                target.unlink()
            shutil.copyfile(EXAMPLES_DIR / rel, target)
            written.append(target)
    except OSError as exc:
        raise InputError(f"--out {dest}: cannot write the examples: {exc}") from None
    return written
