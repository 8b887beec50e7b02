"""The system's framed command protocol: one definition for the RTL and the host driver.

The host sends a **request**, the system answers each with one **reply**, in order. Both
directions are a sync byte followed by 32-bit little-endian words::

    request:  0xA5 | H0 = cmd | 0 << 8 | count << 16 | H1 = arg | payload (count words) | CRC
    reply:    0x5A | R0 = cmd | code << 8 | count << 16 | R1 = detail | payload (count words) | CRC

**Pipelining.** A host may send a request before the reply of the previous one has
arrived, with at most one request waiting: request n + 1 may follow request n at once if
it is at most the receive FIFO's size (``system.py:RX_FIFO_BYTES``), and request n + 2
waits for reply n. **Resynchronisation.** A refused request (any code but OK) drops what
follows it: the system empties its receive FIFO when the refusal's reply has left and
drops every byte until the line has been silent for ``FRAME_TIMEOUT_BYTES`` byte times. A
request sent behind a refused one is therefore never executed and gets no reply; after a
refused reply the host stays silent for ``FRAME_TIMEOUT_BYTES`` byte times before its next
request.

``CRC`` is the CRC-32 (``zlib.crc32``) of the frame's words after the sync byte (H0 or R0
through the last payload word), the same CRC as the image format's
(:func:`doublesparse.sim.formats.crc32_words`). A request whose CRC does not match, whose
command is unknown, whose count breaks the command's rule, or that stops for more than
``FRAME_TIMEOUT_BYTES`` byte times is refused with its :class:`Reply` code and changes
nothing.

Commands (:class:`Cmd`):

* ``WRITE`` (arg: engine bus address): the ``count`` payload words to the addresses
  ``arg, arg + 1, ...`` of the engine's host bus (``rtl/engine/regmap.py``), after the
  whole frame passed its CRC; refused with ``BUSY`` while the engine runs.
* ``READ`` (arg: address, count: words to read, no payload): the reply carries the words of
  ``arg, arg + 1, ...``.
* ``LOAD`` (no arg; payload: :data:`LOAD_WORDS` descriptor words, then one memory image of
  ``docs/formats.md``): the image is decoded twice by the hardware decoder, first to check
  it (format, CRCs, that it fits), then into the engine's memories; a bad image is refused
  with ``BAD_IMAGE`` (detail: the decoder's error code) or ``TOO_BIG`` and nothing is
  written. Descriptor: word 0 = target (:class:`Target`, bits 7..0) | PE (bits 15..8);
  word 1 = first entry; word 2 = first weight value (``WGT`` only). ``ACT``: the tensor
  (C, H, W) becomes activation entries from the first entry on, pixel-major,
  ``ceil(C / scan_width)`` entries a pixel. ``WGT``: the tensor (C, F, R, S) (PE ``p``'s
  filters, channel axis first) becomes weight entries of PE ``p`` and its nonzero values
  weight values from the first value on. The reply's detail is the number of entries
  written (bits 15..0) and of weight values (bits 31..16).
* ``STATUS`` (no arg, no payload): the reply carries :data:`STATUS_WORDS` words (see
  :data:`STATUS_FIELDS`).
* ``START`` (arg: the engine's CTRL value): writes CTRL (start, encode, abort bits);
  an abort is taken while busy, the others are refused with ``BUSY``.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from amaranth.lib import enum

from ...sim.formats import crc32_words

__all__ = ["SYNC_REQUEST", "SYNC_REPLY", "Cmd", "Reply", "Target", "LOAD_WORDS",
           "STATUS_FIELDS", "STATUS_WORDS", "FRAME_TIMEOUT_BYTES", "HEADER_WORDS",
           "request_frame", "reply_frame", "parse_reply", "ProtocolError"]

SYNC_REQUEST = 0xA5
SYNC_REPLY = 0x5A
#: words of a frame's header (H0 / R0 and H1 / R1)
HEADER_WORDS = 2
#: a request is dropped (reply ``TIMEOUT``) when no byte of it arrives for this many byte
#: times (10 bit periods each); after a refusal, bytes are dropped until a silence this long
FRAME_TIMEOUT_BYTES = 64


class Cmd(enum.IntEnum, shape=8):
    WRITE = 1
    READ = 2
    LOAD = 3
    STATUS = 4
    START = 5


class Reply(enum.IntEnum, shape=8):
    """A reply's code: ``OK`` or why the request was refused (nothing was written)."""
    OK = 0
    BAD_CRC = 1          # the request's CRC word differs from the CRC of its words
    BAD_CMD = 2          # unknown command
    BAD_LENGTH = 3       # count breaks the command's rule or exceeds the frame buffer
    TIMEOUT = 4          # the request stopped before its CRC word
    BUSY = 5             # the engine runs: writes, loads and starts wait for it
    BAD_IMAGE = 6        # the decoder refused the image (detail: its error code)
    TOO_BIG = 7          # the decoded image does not fit the target memory
    BAD_TARGET = 8       # LOAD descriptor: unknown target or PE


class Target(enum.IntEnum, shape=8):
    ACT = 0
    WGT = 1


#: descriptor words at the start of a LOAD payload
LOAD_WORDS = 3
#: the STATUS reply's words, in order
STATUS_FIELDS = (
    ("engine_status", "the engine's STATUS register"),
    ("framing_errors", "UART bytes with a bad stop bit (since reset, saturating)"),
    ("overruns", "UART bytes dropped because the previous byte was not taken"),
    ("refused", "requests refused (any code but OK) since reset"),
)
STATUS_WORDS = len(STATUS_FIELDS)


class ProtocolError(Exception):
    """A reply that cannot be parsed (sync, length or CRC)."""


def _frame(sync: int, w0: int, w1: int, payload: Sequence[int]) -> bytes:
    words = [w0 & 0xFFFF_FFFF, w1 & 0xFFFF_FFFF] + [int(w) & 0xFFFF_FFFF for w in payload]
    words.append(crc32_words(words))
    return bytes([sync]) + struct.pack(f"<{len(words)}I", *words)


def request_frame(cmd: int, arg: int = 0, payload: Sequence[int] = (),
                  count: int | None = None) -> bytes:
    """The bytes of a request; ``count`` defaults to ``len(payload)`` (a READ gives the
    words to read and no payload)."""
    count = len(payload) if count is None else count
    if not 0 <= count <= 0xFFFF:
        raise ValueError(f"count {count} does not fit 16 bits")
    return _frame(SYNC_REQUEST, int(cmd) | count << 16, arg, payload)


def reply_frame(cmd: int, code: int, detail: int = 0, payload: Sequence[int] = ()) -> bytes:
    """The bytes of a reply (what the system sends; for models and tests)."""
    return _frame(SYNC_REPLY, int(cmd) | int(code) << 8 | len(payload) << 16, detail, payload)


def parse_reply(data: bytes) -> tuple[int, int, int, list[int], int]:
    """``(cmd, code, detail, payload, length)`` of the reply at the start of ``data``
    (``length``: its bytes); raises :class:`ProtocolError` if it is not a whole, correct
    reply."""
    if len(data) < 1 + 4 * (HEADER_WORDS + 1):
        raise ProtocolError(f"reply too short ({len(data)} bytes)")
    if data[0] != SYNC_REPLY:
        raise ProtocolError(f"reply sync byte is 0x{data[0]:02x}, not 0x{SYNC_REPLY:02x}")
    w0, detail = struct.unpack_from("<2I", data, 1)
    count = w0 >> 16
    length = 1 + 4 * (HEADER_WORDS + count + 1)
    if len(data) < length:
        raise ProtocolError(f"reply of {count} words is {length} bytes, got {len(data)}")
    words = list(struct.unpack_from(f"<{HEADER_WORDS + count + 1}I", data, 1))
    if crc32_words(words[:-1]) != words[-1]:
        raise ProtocolError("reply CRC mismatch")
    return w0 & 0xFF, w0 >> 8 & 0xFF, detail, words[HEADER_WORDS:-1], length
