"""Image codecs behind one contract (``Codec``) and a name registry."""

from diffstream.codecs.base import Codec, CodecError, Encoded, Image
from diffstream.codecs.registry import available_codecs, codec_class, create_codec, register_codec

__all__ = [
    "Codec",
    "CodecError",
    "Encoded",
    "Image",
    "available_codecs",
    "codec_class",
    "create_codec",
    "register_codec",
]
