"""A throw-away virtual environment for tests that install packages for real (non-editable),
without downloading anything.

``make_overlay_venv(root)`` creates ``root`` with ``python -m venv --without-pip`` and drops a
``.pth`` file in its site-packages naming the *running* interpreter's site-packages, so torch,
setuptools, pip and every other dependency are importable without being reinstalled. A plain
path line in a ``.pth`` file is only appended to ``sys.path``: the ``.pth`` files *inside*
that folder are not processed, so the shared venv's editable diffstream finder is not loaded
and the diffstream that ``TempVenv.pip_install`` puts into ``root`` is the one imported (the
venv's own site-packages comes first). Commands run with ``PYTHONPATH`` removed, from the
folder the caller gives (an empty one: nothing of the checkout is on the path).

Used by ``tests/integration/install/`` (the wheel install of diffstream), whose conftest
imports the session-scoped ``diffstream_venv`` fixture. A test there that installs another
package into the same venv (the example plugin package) takes that fixture and calls
``diffstream_venv.pip_install(copy_source(path, tmp), cwd=tmp)``; elsewhere, import the
fixture into the test module or build one with ``make_overlay_venv``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT

OVERLAY_PTH = "_diffstream_test_overlay.pth"
# What a source copy for a non-editable install leaves out (caches, outputs, the shared venv).
COPY_IGNORE = shutil.ignore_patterns(".git", ".venv", "runs", "build", "dist", "*.egg-info",
                                     "__pycache__", ".pytest_cache", ".ruff_cache",
                                     ".hypothesis", "shared")


@dataclass(frozen=True)
class TempVenv:
    root: Path

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    def bin(self, name: str) -> Path:
        return self.root / "bin" / name

    def env(self) -> dict[str, str]:
        """The environment of an activated venv, without this test run's PYTHONPATH."""
        env = {k: v for k, v in os.environ.items()
               if k not in {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP"}}
        env["VIRTUAL_ENV"] = str(self.root)
        env["PATH"] = f"{self.root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env["PIP_NO_INDEX"] = "1"  # never reach for a package index
        env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
        env.setdefault("MPLBACKEND", "Agg")
        return env

    def run(self, args: list[str | Path], cwd: Path, timeout: float = 300
            ) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(a) for a in args], cwd=cwd, env=self.env(), text=True,
                              capture_output=True, timeout=timeout, check=False)

    def site_packages(self) -> Path:
        out = self.run([self.python, "-c",
                        "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                       cwd=self.root)
        return Path(out.stdout.strip())

    def pip_install(self, source: Path, cwd: Path, timeout: float = 600
                    ) -> subprocess.CompletedProcess[str]:
        """``pip install --no-deps --no-build-isolation --ignore-installed SOURCE`` into
        this venv (non-editable). ``--ignore-installed``: the overlaid site-packages may
        hold an editable install of the same package, which pip must neither count as
        installed nor try to uninstall. Build it from a copy (``copy_source``): pip
        builds in the source tree and would leave ``build/`` behind."""
        return self.run([self.python, "-m", "pip", "install", "--no-deps",
                         "--no-build-isolation", "--ignore-installed", "--no-index", source],
                        cwd=cwd, timeout=timeout)


def make_overlay_venv(root: Path) -> TempVenv:
    """A venv at ``root`` that sees the running interpreter's site-packages (see above)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True,
                   capture_output=True, timeout=120)
    venv = TempVenv(root)
    paths = sysconfig.get_paths()
    lines = dict.fromkeys(str(Path(paths[k]).resolve()) for k in ("purelib", "platlib"))
    (venv.site_packages() / OVERLAY_PTH).write_text("\n".join(lines) + "\n")
    return venv


def copy_source(src: Path, dest: Path) -> Path:
    """A copy of a source tree to build from (symlinks kept as links)."""
    shutil.copytree(src, dest, ignore=COPY_IGNORE, symlinks=True)
    return dest


@pytest.fixture(scope="session")
def diffstream_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TempVenv]:
    """An overlay venv with this checkout's diffstream installed non-editable (from a
    copy). Fails the test with pip's output when the install fails."""
    base = tmp_path_factory.mktemp("install")
    venv = make_overlay_venv(base / "venv")
    src = copy_source(ROOT, base / "src")
    done = venv.pip_install(src, cwd=base)
    if done.returncode != 0:
        pytest.fail(f"pip install of {src} failed:\n{done.stdout}\n{done.stderr}")
    yield venv
