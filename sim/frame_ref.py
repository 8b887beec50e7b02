"""The frame receiver's rules as a reference model, spelled from the protocol
(``docs/board.md``), independent of ``rtl/system/frame.py``: what the receiver must report
for a request's bytes. Used by ``tb/test_frame.py`` and ``scripts/bench_uart.py``."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..rtl.system.protocol import LOAD_WORDS, SYNC_REQUEST, Cmd, Reply
from .formats import HEADER_WORDS as IMAGE_HEADER_WORDS
from .formats import crc32_words

__all__ = ["count_ok", "Want", "reference", "COMMANDS"]

COMMANDS = {int(c) for c in Cmd}


def count_ok(cmd: int, count: int, buffer_words: int) -> bool:
    """The count rule of each command, spelled here from the protocol's rules."""
    return {Cmd.WRITE: 1 <= count <= buffer_words,
            Cmd.LOAD: LOAD_WORDS + IMAGE_HEADER_WORDS <= count <= buffer_words,
            Cmd.READ: count >= 1,
            Cmd.STATUS: count == 0,
            Cmd.START: count == 0}[cmd]


@dataclass
class Want:
    code: int
    cmd: int = 0
    count: int = 0
    arg: int = 0
    used: int = 0                 # bytes of the request the receiver takes
    writes: list[tuple[int, int]] = field(default_factory=list)   # (index, word)


def reference(frame: bytes, buffer_words: int) -> Want:
    """What the receiver must report for ``frame`` (sync byte first) when the host sends
    these bytes and then stays silent until the event."""
    assert frame[0] == SYNC_REQUEST
    body = frame[1:]
    words = [int.from_bytes(body[4 * k: 4 * k + 4], "little") for k in range(len(body) // 4)]
    h0 = words[0] if words else 0
    cmd, count = h0 & 0xFF, h0 >> 16
    arg = words[1] if len(words) > 1 else 0
    n = 0 if cmd == Cmd.READ else count
    payload = words[2:2 + n]
    writes = list(enumerate(payload)) if count <= buffer_words else []
    if len(words) < 3 + n:
        return Want(Reply.TIMEOUT, cmd, count, arg, len(frame), writes)
    if crc32_words(words[:2 + n]) != words[2 + n]:
        code = Reply.BAD_CRC
    elif cmd not in COMMANDS or h0 >> 8 & 0xFF:
        code = Reply.BAD_CMD
    elif not count_ok(cmd, count, buffer_words):
        code = Reply.BAD_LENGTH
    else:
        code = Reply.OK
    return Want(code, cmd, count, arg, 1 + 4 * (3 + n), writes)


