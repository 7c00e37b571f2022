"""codecs/classic."""
