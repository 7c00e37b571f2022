"""An example diffstream plugin: ``DownsampleWebP`` (codec ``downwebp``) and ``AIMDPolicy``
(policy ``aimd``), registered by entry points in ``pyproject.toml``."""

from diffstream_plugin_example.codec import DownsampleWebP
from diffstream_plugin_example.policy import AIMDPolicy

__all__ = ["AIMDPolicy", "DownsampleWebP"]
