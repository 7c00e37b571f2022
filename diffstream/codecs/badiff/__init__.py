"""codecs/badiff."""
