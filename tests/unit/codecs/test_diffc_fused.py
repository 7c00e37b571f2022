"""The fused PFR kernel's build and load: every failure falls back to torch with a warning
that says why, and the cache key separates architectures, compilers, sources and flags."""

from __future__ import annotations

import logging
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest

from diffstream.codecs.diffc import fused, pfr, prng

LOGGER = "diffstream.codecs.diffc.fused"
HAVE_CC = bool(os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc"))
needs_cc = pytest.mark.skipif(not HAVE_CC, reason="no C compiler on this machine")


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    """A private kernel cache and a forgotten load attempt (restored afterwards)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(fused.NO_C_ENV, raising=False)
    fused.reset()
    yield tmp_path
    fused.reset()


def _check_results_correct() -> None:
    """pfr.select (auto backend, whatever it resolved to) returns the reference index."""
    rng = np.random.default_rng(5)
    for r in range(3):
        m = (rng.standard_normal(45) * 0.5).astype(np.float32)
        key = prng.derive_key(3, r)
        s = (fused.reference_dots(pfr._pad4(m), key, 0, 1024).astype(np.float64)
             - pfr.log_arrival_times(key, 1024))
        assert pfr.select(m, key, 10) == int(np.argmax(s))


def _script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def _so_path(tmp_path: Path) -> Path:
    tag = fused.cache_key(fused.compiler_identity(fused.find_compiler()))
    return tmp_path / "cache" / "diffstream" / f"diffc_pfr_{tag}.so"


@needs_cc
def test_builds_into_the_keyed_cache_and_loads(fresh):
    assert fused.available() and fused.reason() is None
    assert _so_path(fresh).is_file()
    _check_results_correct()


@needs_cc
def test_corrupt_cache_file_is_rebuilt_with_a_warning(fresh, caplog):
    so = _so_path(fresh)
    so.parent.mkdir(parents=True)
    so.write_bytes(b"this is not an ELF file" * 10)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert fused.available()
    assert any("does not load" in r.message and "rebuilding" in r.message
               for r in caplog.records)
    assert so.read_bytes()[:4] == b"\x7fELF"
    _check_results_correct()


def test_corrupt_cache_and_a_compiler_making_garbage_fall_back(fresh, monkeypatch, caplog):
    """A foreign/corrupt .so that cannot be rebuilt: warning with the cause, torch path."""
    cc = _script(fresh / "fakecc", 'if [ "$1" = --version ]; then echo "fakecc 1.0"; exit 0; fi\n'
                 'while [ $# -gt 0 ]; do if [ "$1" = -o ]; then echo garbage > "$2"; fi; '
                 'shift; done\n')
    monkeypatch.setenv("CC", cc)
    so = fresh / "cache" / "diffstream" / f"diffc_pfr_{fused.cache_key('fakecc 1.0')}.so"
    so.parent.mkdir(parents=True)
    so.write_bytes(b"\x00garbage")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert not fused.available()
    msgs = [r.message for r in caplog.records]
    assert any("rebuilding" in m for m in msgs)
    assert any("unavailable" in m and "does not load" in m for m in msgs)
    assert "does not load" in fused.reason()
    _check_results_correct()


@pytest.mark.parametrize("how", ["CC points nowhere", "empty PATH"])
def test_missing_compiler_falls_back_with_a_warning(fresh, monkeypatch, caplog, how):
    if how == "CC points nowhere":
        monkeypatch.setenv("CC", str(fresh / "no" / "such" / "cc"))
        why = "does not run"
    else:
        monkeypatch.delenv("CC", raising=False)
        monkeypatch.setenv("PATH", str(fresh / "empty"))
        why = "no C compiler"
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert not fused.available()
    assert any(why in r.message and "torch" in r.message for r in caplog.records)
    assert why in fused.reason()
    monkeypatch.setenv("PATH", os.defpath)
    _check_results_correct()


def test_failed_build_falls_back_with_the_compiler_error(fresh, monkeypatch, caplog):
    cc = _script(fresh / "badcc", 'if [ "$1" = --version ]; then echo "badcc 2"; exit 0; fi\n'
                 'echo "pfr.c:1: error: out of luck" >&2; exit 1\n')
    monkeypatch.setenv("CC", cc)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert not fused.available()
    assert any("out of luck" in r.message for r in caplog.records)
    _check_results_correct()


@needs_cc
def test_a_kernel_with_another_summation_order_fails_its_self_test(fresh, monkeypatch, caplog):
    """A .so that loads but scores differently (here: lanes summed in another order, as a
    compiler contracting into FMAs would) is refused, not used."""
    real = fused.find_compiler()
    cc = _script(fresh / "oddcc",
                 'if [ "$1" = --version ]; then echo "oddcc 3"; exit 0; fi\n'
                 'for a in "$@"; do case "$a" in *.c) sed -i '
                 '"s/return (v0 + v1) + (v2 + v3);/return (v0 + v2) + (v1 + v3);/" "$a";; '
                 'esac; done\n'
                 f'exec "{real}" "$@"\n')
    monkeypatch.setenv("CC", cc)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert not fused.available()
    assert "differ from the reference" in fused.reason()
    _check_results_correct()


def test_no_c_env_forces_torch_without_a_warning(fresh, monkeypatch, caplog):
    monkeypatch.setenv(fused.NO_C_ENV, "1")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert not fused.available()
    assert not caplog.records and fused.NO_C_ENV in fused.reason()
    assert pfr.resolve_backend(np.zeros(3, np.float32), "auto") == "torch"
    monkeypatch.setenv(fused.NO_C_ENV, "0")
    assert not fused.forced_off()


def test_outcome_is_recorded_once_after_the_attempt(fresh, monkeypatch, caplog):
    """One warning for the first failed attempt; later calls reuse the recorded outcome."""
    monkeypatch.setenv("CC", str(fresh / "nowhere"))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for _ in range(3):
            assert fused.library() is None
    assert len(caplog.records) == 1
    with pytest.raises(RuntimeError, match="does not run"):
        fused.pfr_dots(np.zeros(4, np.float32), 1, 0, 1, prng.normal_table_np(),
                       np.zeros(1, np.float32))


def test_cache_key_covers_machine_compiler_source_and_flags():
    base = fused.cache_key("cc (Debian 12.2.0-14) 12.2.0", "x86_64")
    assert base == fused.cache_key("cc (Debian 12.2.0-14) 12.2.0", "x86_64")
    assert base != fused.cache_key("cc (Debian 13.1.0-1) 13.1.0", "x86_64")
    assert base != fused.cache_key("clang version 16.0.6", "x86_64")
    assert base != fused.cache_key("cc (Debian 12.2.0-14) 12.2.0", "aarch64")
    assert base != fused.cache_key("cc (Debian 12.2.0-14) 12.2.0", "x86_64",
                                   flags=(*fused.FLAGS, "-march=native"))
    assert base != fused.cache_key("cc (Debian 12.2.0-14) 12.2.0", "x86_64",
                                   source=fused.C_SOURCE + "\n")
