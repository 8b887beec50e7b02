"""The compressed-format decoder (``docs/decoder.md``)."""

from .decoder import WORD_LAYOUT, Decoder

__all__ = ["Decoder", "WORD_LAYOUT"]
