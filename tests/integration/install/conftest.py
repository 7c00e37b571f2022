"""The installed-package tests share one temp venv with diffstream installed from a wheel
(``diffstream_venv``, session-scoped): a test here that installs another package into it
(the example plugin package) just takes the fixture."""

from tests.support.temp_venv import diffstream_venv  # noqa: F401 (the fixture)
