"""The compressed-format decoder (``docs/decoder.md``): :class:`Decoder` and the
components it is built from."""

from .crc import crc32_key, crc32_step
from .decoder import Decoder
from .header import HeaderParser
from .layouts import WORD_LAYOUT, partial_layout
from .record import RecordParser
from .runlength import RunLengthParser

__all__ = ["Decoder", "WORD_LAYOUT", "HeaderParser", "RecordParser", "RunLengthParser",
           "crc32_key", "crc32_step", "partial_layout"]
