"""diffstream: a streaming transmission simulator for bandwidth-adaptive image codecs."""

__version__ = "0.1.0"
