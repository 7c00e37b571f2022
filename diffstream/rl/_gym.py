"""The one place gymnasium is imported (the optional ``[rl]`` extra)."""

from __future__ import annotations

from typing import Any

from diffstream.errors import DiffstreamError

INSTALL_HINT = 'pip install -e ".[rl]"'


class MissingExtra(DiffstreamError):
    """gymnasium is not installed."""


def gymnasium() -> Any:
    try:
        import gymnasium as gym
    except ImportError as exc:
        raise MissingExtra(f"diffstream.rl needs gymnasium (the [rl] extra): {INSTALL_HINT}"
                           ) from exc
    return gym
