"""codecs/gic."""
