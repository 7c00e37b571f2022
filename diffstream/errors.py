"""Errors that carry a user-facing explanation and map to exit code 2 (bad input)."""

from __future__ import annotations


class DiffstreamError(Exception):
    """Base class for errors the command line reports without a traceback."""

    exit_code = 1


class InputError(DiffstreamError):
    """Bad user input: a scenario, trace or image that cannot be used as given.

    The message names the file (and line or field when known) and what to do about it.
    """

    exit_code = 2


class ConfigError(InputError):
    """A scenario file failed validation."""


class TraceFormatError(InputError):
    """A trace file does not match its declared format."""


def located(path: object, line: int | None, message: str) -> str:
    """Format ``file:line: message`` the way compilers do, so editors can jump to it."""
    where = f"{path}:{line}" if line is not None else f"{path}"
    return f"{where}: {message}"
