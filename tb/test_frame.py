# amaranth: UnusedElaboratable=no
"""The protocol's framing (rtl/system/frame.py) in Amaranth's simulator against the
protocol's Python functions (rtl/system/protocol.py: ``request_frame``, ``reply_frame``,
``parse_reply``) and a request parser written here from the protocol's rules.

FrameReceiver: a host model sends transactions one at a time: junk bytes, then a request
(whole, cut short, or corrupted), with random gaps shorter than the timeout. It waits for
the event (random backpressure on ``o``; ``tb/streams.py`` checks the stream rules), drops
what is left of its request when the event is taken (the UART drops bytes while
``i.ready`` is low), and pulses ``release`` after a random delay (sometimes in the cycle
the event is taken). A Python model of the frame buffer RAM is fed by ``buf_wr``. Every
event, its latency, the bytes taken, the buffer writes and ``i.ready`` are checked.

ReplySender: random replies with random gaps on ``hdr`` and ``words`` and random
backpressure on ``o``; the bytes must be those of ``reply_frame`` and parse back with
``parse_reply``; ``done`` must be high exactly in the cycles a reply's last byte is taken.

The seed is printed (DS_SEED overrides it); a mismatch prints both sides.
"""

from __future__ import annotations

import struct
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import pytest

from doublesparse.rtl.system.frame import (
    EVENT_LATENCY,
    FrameReceiver,
    ReplySender,
    reply_layout,
    request_layout,
)
from doublesparse.rtl.system.protocol import (
    LOAD_WORDS,
    SYNC_REQUEST,
    Cmd,
    Reply,
    parse_reply,
    reply_frame,
    request_frame,
)
from doublesparse.sim.formats import HEADER_WORDS as IMAGE_HEADER_WORDS
from doublesparse.sim.formats import crc32_words
from doublesparse.sim.frame_ref import Want, count_ok, reference  # noqa: F401
from doublesparse.tb.amaranth_harness import simulate
from doublesparse.tb.streams import Sink, Source, pack, seed_for, unpack

BUF = 24          # frame buffer words of the receiver under test
TIMEOUT = 24      # its timeout_cycles
COMMANDS = {int(c) for c in Cmd}


def _rng(name: str) -> np.random.Generator:
    seed = seed_for(name)
    print(f"seed {seed} (name {name!r}; set DS_SEED to change)")
    return np.random.default_rng(seed)


def _u32(rng) -> int:
    return int(rng.integers(0, 1 << 32, dtype=np.uint64))


def _words(rng, n: int) -> list[int]:
    return [_u32(rng) for _ in range(n)]


def raw_request(h0: int, arg: int, payload: list[int]) -> bytes:
    """A request with any H0 (``request_frame`` takes the command and count apart)."""
    words = [h0, arg, *payload]
    return bytes([SYNC_REQUEST]) + struct.pack(f"<{len(words) + 1}I", *words,
                                                crc32_words(words))


def valid_request(rng, buffer_words: int = BUF) -> bytes:
    cmd = Cmd(int(rng.choice([int(c) for c in Cmd])))
    arg = _u32(rng)
    if cmd == Cmd.READ:
        count = int(rng.integers(1, 1 << 16)) if rng.random() < 0.5 else int(rng.integers(1, 5))
        return request_frame(cmd, arg, count=count)
    lo, hi = {Cmd.WRITE: (1, buffer_words),
              Cmd.LOAD: (LOAD_WORDS + IMAGE_HEADER_WORDS, buffer_words)}.get(cmd, (0, 0))
    return request_frame(cmd, arg, _words(rng, int(rng.integers(lo, hi + 1))))


def with_stray(rng, tx: Tx, p_flush: float = 0.1) -> Tx:
    """``tx`` with stray bytes for after a flushed release (random, many sync bytes,
    sometimes a whole valid request) at random gaps below the timeout (sometimes one short
    of it), and a quiet of the timeout or a little more; an OK request is flushed with
    probability ``p_flush``."""
    tx.flush = bool(rng.random() < p_flush)
    n = int(rng.integers(0, 12))
    stray = bytes(SYNC_REQUEST if rng.random() < 0.3 else int(rng.integers(0, 256))
                  for _ in range(n))
    if rng.random() < 0.3:
        stray += valid_request(rng)
    tx.stray = stray
    tx.stray_gaps = [TIMEOUT - 1 if rng.random() < 0.1 else
                     int(rng.integers(0, 3)) for _ in stray]
    tx.quiet = TIMEOUT + int(rng.choice([0, 0, 1, 2, 7]))
    return tx


def junk(rng, most: int = 5) -> bytes:
    n = int(rng.integers(0, most + 1))
    return bytes(int(b) for b in rng.choice([b for b in range(256) if b != SYNC_REQUEST], n))


# ------------------------------------------------------------------ receiver harness --

@dataclass
class Tx:
    """One transaction of the host: ``junk``, then ``frame``; before byte ``gap_at`` of the
    frame the host stays silent for ``gap`` cycles (0: random gaps only). When its request
    is released with ``flush`` (always after a refused event, sometimes after an OK one:
    ``flush``), the host sends ``stray`` bytes, the k-th after ``stray_gaps[k]`` silent
    cycles, then stays silent ``quiet`` cycles (at least the timeout) before the next
    transaction."""
    frame: bytes
    junk: bytes = b""
    gap_at: int = 0
    gap: int = 0
    kind: str = "valid"
    flush: bool = False
    stray: bytes = b""
    stray_gaps: list[int] = field(default_factory=list)
    quiet: int = TIMEOUT


@dataclass
class Seen:
    event: dict
    taken: int                    # bytes of the transaction taken on i
    writes: list[tuple[int, int]]
    buffer: list[int | None]      # the RAM model when the event was taken
    latency: int                  # first cycle of o.valid - cycle of the last byte taken
    early_not_ready: list[int]    # cycles before the event with i.ready low, from the last take


def run_receiver(txs: list[Tx], rng, *, p_fast: float = 0.7, p_ready: float = 0.6,
                 buffer_words: int = BUF, timeout: int = TIMEOUT) -> tuple[list[Seen], int]:
    """Send ``txs`` one after the other; the events seen and the final ``junk`` count."""
    dut = FrameReceiver(buffer_words, timeout)
    seen: list[Seen] = []
    out = {}

    def gap() -> int:
        r = rng.random()
        if r < p_fast:
            return 0
        return int(rng.integers(1, 4)) if r < 0.95 else int(rng.integers(1, timeout))

    async def bench(ctx):
        ram: list[int | None] = [None] * buffer_words
        sink = Sink(dut.o, rng, p_ready, name="o")
        t = 0
        flushed = False
        for tx in txs:
            data = deque(tx.junk + tx.frame)
            special = len(tx.junk) + tx.gap_at if tx.gap else -1
            sent, cur, wait = 0, None, 0 if flushed else gap()
            flushed = False
            writes, last_take, valid_at, not_ready = [], None, None, []
            release_in, released = None, False
            same_cycle = rng.random() < 0.2
            budget = t + (len(data) + 2) * timeout + 4 * tx.gap + 500
            while not released:
                assert t < budget, f"cycle {t}: no event for {tx.kind} {tx.frame.hex()}"
                if cur is None and data:
                    if wait:
                        wait -= 1
                    else:
                        cur = data.popleft()
                ctx.set(dut.i.valid, cur is not None)
                if cur is not None:
                    ctx.set(dut.i.payload, cur)
                sink.drive(ctx)
                valid = ctx.get(dut.o.valid)
                rel = (release_in == 0 or
                       (release_in is None and same_cycle and valid and sink.ready))
                ctx.set(dut.release, rel)
                if rel:
                    code = (seen[-1].event["code"] if release_in is not None
                            else ctx.get(dut.o.payload.code))
                    flushed = code != Reply.OK or tx.flush
                    ctx.set(dut.flush, flushed)
                # observe
                ready = ctx.get(dut.i.ready)
                if valid_at is None and valid:
                    valid_at = t
                if valid_at is None and not ready:
                    not_ready.append(t)
                if valid_at is not None or release_in is not None:
                    assert not ready, f"cycle {t}: i.ready high between event and release"
                if cur is not None and ready:
                    sent += 1
                    last_take, cur = t, None
                    wait = tx.gap if sent == special else gap()
                if ctx.get(dut.buf_wr.en):
                    addr, word = ctx.get(dut.buf_wr.addr), ctx.get(dut.buf_wr.data)
                    assert addr < buffer_words, f"cycle {t}: buffer write at {addr}"
                    ram[addr] = word
                    writes.append((addr, word))
                n_got = len(sink.got)
                sink.observe(ctx, t)
                if rel:
                    released = True
                if len(sink.got) > n_got:
                    data.clear()
                    cur = None                     # dropped while i.ready is low
                    if not rel:
                        release_in = int(rng.integers(0, 16))
                    seen.append(Seen(unpack(request_layout(), sink.got[-1]), sent, writes,
                                     list(ram), valid_at - last_take,
                                     [c - last_take for c in not_ready if c > last_take]))
                    assert all(c >= last_take for c in not_ready), (
                        f"i.ready low at cycles {not_ready} before the last byte {last_take}")
                elif release_in is not None:
                    release_in -= 1
                await ctx.tick()
                t += 1
            ctx.set(dut.release, 0)
            ctx.set(dut.flush, 0)
            if flushed:
                t = await flushing(ctx, tx, t)
        out["junk"], out["cycles"] = ctx.get(dut.junk), t

    async def flushing(ctx, tx, t) -> int:
        """After a release with ``flush``: the stray bytes, each taken and dropped (no
        event), then the quiet; returns the cycle count."""
        assert len(tx.stray_gaps) == len(tx.stray)
        for byte, g in zip(tx.stray, tx.stray_gaps, strict=True):
            ctx.set(dut.i.valid, 0)
            for _ in range(g):
                assert not ctx.get(dut.o.valid), f"cycle {t}: an event while flushing"
                await ctx.tick()
                t += 1
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.payload, byte)
            assert ctx.get(dut.i.ready), f"cycle {t}: i.ready low while flushing"
            await ctx.tick()
            t += 1
        ctx.set(dut.i.valid, 0)
        for _ in range(tx.quiet):
            assert not ctx.get(dut.o.valid), f"cycle {t}: an event while flushing"
            await ctx.tick()
            t += 1
        return t

    simulate(dut, bench)
    print(f"{len(txs)} transactions in {out['cycles']} cycles")
    return seen, out["junk"]


def check_receiver(txs: list[Tx], seen: list[Seen], junk_count: int,
                   buffer_words: int = BUF, timeout: int = TIMEOUT) -> dict[str, int]:
    """Compare every event with the reference; the count of transactions of each kind."""
    assert len(seen) == len(txs)
    kinds: dict[str, int] = {}
    for k, (tx, s) in enumerate(zip(txs, seen, strict=True)):
        kinds[tx.kind] = kinds.get(tx.kind, 0) + 1
        sent = tx.frame[:tx.gap_at] if tx.gap >= timeout else tx.frame
        want = reference(sent, buffer_words)
        ev = s.event
        where = (f"transaction {k} ({tx.kind}): {tx.frame.hex()}\n  rtl:       {ev}, "
                 f"{s.taken} bytes taken, writes {s.writes}\n  reference: {want}")
        assert ev["code"] == want.code, where
        if want.code != Reply.TIMEOUT:
            assert (ev["cmd"], ev["count"], ev["arg"]) == (want.cmd, want.count,
                                                           want.arg), where
            assert s.latency == EVENT_LATENCY, f"latency {s.latency}\n{where}"
            assert s.early_not_ready == list(range(1, EVENT_LATENCY)), (
                f"i.ready low at {s.early_not_ready} after the last byte\n{where}")
        else:
            assert s.latency == timeout + 1, f"timeout latency {s.latency}\n{where}"
            assert not s.early_not_ready, where
        assert s.taken == len(tx.junk) + want.used, where
        assert s.writes == want.writes, where
        if tx.kind == "valid":
            assert ev["code"] == Reply.OK, where
        elif tx.kind != "boundary":
            assert ev["code"] != Reply.OK, f"a refused request reported OK\n{where}"
        if ev["code"] == Reply.OK:
            words = [w for _, w in want.writes]
            assert s.buffer[:len(words)] == words, (
                f"buffer {s.buffer[:len(words)]} != payload {words}\n{where}")
    sent_junk = sum(len(tx.junk) + (len(tx.stray) if s.event["code"] != Reply.OK or tx.flush
                                     else 0) for tx, s in zip(txs, seen, strict=True))
    assert junk_count == min(sent_junk, 0xFFFF), f"junk {junk_count}, sent {sent_junk}"
    print("transactions:", kinds)
    return kinds


# ---------------------------------------------------------------------- receiver tests --

def test_receiver_valid_requests() -> None:
    start = time.monotonic()
    rng = _rng("test_receiver_valid_requests")
    txs = [with_stray(rng, Tx(valid_request(rng), junk(rng))) for _ in range(150)]
    seen, junk_count = run_receiver(txs, rng)
    check_receiver(txs, seen, junk_count)
    cmds = {ev.event["cmd"] for ev in seen}
    assert cmds == COMMANDS, f"commands covered: {cmds}"
    print(f"{time.monotonic() - start:.1f} s")


def _flipped(rng) -> Tx:
    frame = bytearray(valid_request(rng))
    bit = int(rng.integers(8, 8 * len(frame)))           # anywhere after the sync byte
    frame[bit // 8] ^= 1 << bit % 8
    return Tx(bytes(frame), junk(rng), kind="flip")


def test_receiver_bit_flips() -> None:
    """Single-bit flips after the sync byte: BAD_CRC, or TIMEOUT when the flip makes the
    frame longer than what is sent; the good request after each is received."""
    start = time.monotonic()
    rng = _rng("test_receiver_bit_flips")
    txs = []
    for _ in range(200):
        txs += [with_stray(rng, _flipped(rng)), Tx(valid_request(rng), junk(rng))]
    seen, junk_count = run_receiver(txs, rng)
    kinds = check_receiver(txs, seen, junk_count)
    codes = [s.event["code"] for tx, s in zip(txs, seen, strict=True) if tx.kind == "flip"]
    assert set(codes) <= {Reply.BAD_CRC, Reply.TIMEOUT}, set(codes)
    print(f"flips: {kinds['flip']}, BAD_CRC {codes.count(Reply.BAD_CRC)}, "
          f"TIMEOUT {codes.count(Reply.TIMEOUT)}; {time.monotonic() - start:.1f} s")
    assert codes.count(Reply.TIMEOUT) > 5 and codes.count(Reply.BAD_CRC) > 100


def _refused(rng, kind: str) -> Tx:
    arg, B = _u32(rng), BUF
    if kind == "truncated":
        frame = valid_request(rng)
        return Tx(frame[:int(rng.integers(1, len(frame)))], junk(rng), kind=kind)
    if kind == "silence":                      # a gap of the timeout or more inside
        frame = valid_request(rng)
        return Tx(frame, junk(rng), int(rng.integers(1, len(frame))),
                  TIMEOUT + int(rng.integers(0, 3)), kind)
    if kind == "bad_cmd":
        cmd = int(rng.choice([0, *range(6, 256)]))
        return Tx(request_frame(cmd, arg, _words(rng, int(rng.integers(0, B + 4)))),
                  junk(rng), kind=kind)
    if kind == "bad_length":
        cmd = Cmd(int(rng.choice([int(c) for c in Cmd])))
        count = int(rng.choice({
            Cmd.WRITE: [0, B + 1, B + int(rng.integers(1, 8))],
            Cmd.LOAD: [int(rng.integers(0, LOAD_WORDS + IMAGE_HEADER_WORDS)),
                       B + int(rng.integers(1, 8))],
            Cmd.READ: [0],
        }.get(cmd, [1, int(rng.integers(1, 6))])))
        if cmd == Cmd.READ:
            return Tx(request_frame(cmd, arg, count=0), junk(rng), kind=kind)
        return Tx(request_frame(cmd, arg, _words(rng, count)), junk(rng), kind=kind)
    if kind == "byte1":                        # H0 bits 15..8 not 0, CRC correct
        good = valid_request(rng)
        h0 = int.from_bytes(good[1:5], "little") | int(rng.integers(1, 256)) << 8
        n = 0 if h0 & 0xFF == Cmd.READ else h0 >> 16
        return Tx(raw_request(h0, arg, _words(rng, n)), junk(rng), kind=kind)
    assert kind == "precedence"                # two faults: the first in order wins
    if rng.random() < 0.5:                     # unknown command and a bad CRC
        frame = bytearray(request_frame(int(rng.integers(6, 256)), arg, _words(rng, 2)))
        frame[-1] ^= 1 << int(rng.integers(0, 8))
        return Tx(bytes(frame), junk(rng), kind=kind)
    h0 = int(Cmd.WRITE) | 1 << 8 | (B + 1) << 16   # H0 byte 1 set and a bad count
    return Tx(raw_request(h0, arg, _words(rng, B + 1)), junk(rng), kind=kind)


REFUSED = {"truncated": 40, "silence": 20, "bad_cmd": 30, "bad_length": 40, "byte1": 30,
           "precedence": 20}


def test_receiver_refused_requests() -> None:
    """Truncated frames and silences (TIMEOUT), unknown commands and H0 byte 1 (BAD_CMD),
    bad counts (BAD_LENGTH), two faults at once; a good request after each."""
    start = time.monotonic()
    rng = _rng("test_receiver_refused_requests")
    bad = [_refused(rng, kind) for kind, n in REFUSED.items() for _ in range(n)]
    txs = []
    for k in rng.permutation(len(bad)):
        txs += [with_stray(rng, bad[k]), Tx(valid_request(rng), junk(rng))]
    seen, junk_count = run_receiver(txs, rng)
    kinds = check_receiver(txs, seen, junk_count)
    codes = {}
    for tx, s in zip(txs, seen, strict=True):
        codes.setdefault(tx.kind, set()).add(Reply(s.event["code"]).name)
    print("codes by kind:", codes)
    assert codes["truncated"] == codes["silence"] == {"TIMEOUT"}
    assert codes["bad_cmd"] == codes["byte1"] == {"BAD_CMD"}
    assert codes["bad_length"] == {"BAD_LENGTH"}
    assert codes["precedence"] == {"BAD_CRC", "BAD_CMD"}
    print(f"refused: {sum(v for k, v in kinds.items() if k != 'valid')}; "
          f"{time.monotonic() - start:.1f} s")


def test_receiver_timeout_boundary() -> None:
    """Inside a frame, ``timeout_cycles - 1`` cycles without a byte are fine, ``timeout``
    cycles end it; at every position of the frame (after the sync byte, between H0 bytes,
    in the payload, before the CRC word's last byte)."""
    rng = _rng("test_receiver_timeout_boundary")
    frame = request_frame(Cmd.WRITE, 0x1234_5678, _words(rng, 3))
    txs = []
    for at in range(1, len(frame)):
        for gap in (TIMEOUT - 1, TIMEOUT):
            txs.append(Tx(frame, b"", at, gap, "boundary"))
    seen, junk_count = run_receiver(txs, rng, p_fast=1.0)
    check_receiver(txs, seen, junk_count)
    codes = [s.event["code"] for s in seen]
    assert codes == [Reply.OK, Reply.TIMEOUT] * (len(frame) - 1), codes


def test_receiver_flush_boundary() -> None:
    """After a flushed release the receiver drops bytes until ``timeout_cycles`` cycles
    pass without one: a sync byte (or a whole valid request) sent ``timeout_cycles - 1``
    silent cycles after the release or the last dropped byte is dropped, and a request
    whose sync byte comes after ``timeout_cycles`` silent cycles is received."""
    rng = _rng("test_receiver_flush_boundary")
    txs = []
    for k in range(40):
        bad = bytearray(request_frame(Cmd.WRITE, _u32(rng), _words(rng, 2)))
        bad[-1] ^= 1 << int(rng.integers(0, 8))                     # BAD_CRC
        stray = [b"", bytes([SYNC_REQUEST]), valid_request(rng)][k % 3]
        gaps = [TIMEOUT - 1] + [int(rng.integers(0, TIMEOUT)) for _ in stray[1:]]
        txs.append(Tx(bytes(bad), kind="flip", stray=stray, stray_gaps=gaps[:len(stray)],
                      quiet=TIMEOUT))
        txs.append(Tx(valid_request(rng), flush=k % 2 == 1, stray=stray,
                      stray_gaps=gaps[:len(stray)], quiet=TIMEOUT))
    seen, junk_count = run_receiver(txs, rng, p_fast=1.0)
    check_receiver(txs, seen, junk_count)
    codes = [s.event["code"] for s in seen]
    assert codes == [Reply.BAD_CRC, Reply.OK] * 40, codes


@pytest.mark.parametrize("bad", [0, 1])
def test_receiver_parameters(bad) -> None:
    with pytest.raises(ValueError):
        FrameReceiver(buffer_words=[8, 0][bad], timeout_cycles=[1, 8][bad])


# ------------------------------------------------------------------------ reply sender --

def run_sender(replies, rng, *, p_hdr: float, p_words: float, p_ready: float):
    """The bytes the sender emits for ``replies`` (cmd, code, detail, payload) and the
    number of bytes taken when ``done`` was high, cycle by cycle."""
    dut = ReplySender()
    layout = reply_layout()
    hdrs = [pack(layout, cmd=c, code=k, count=len(p), detail=d) for c, k, d, p in replies]
    hdr_src = Source(dut.hdr, hdrs, rng, p_hdr)
    words_src = Source(dut.words, [w for *_, p in replies for w in p], rng, p_words)
    sink = Sink(dut.o, rng, p_ready, name="o")
    total = sum(len(reply_frame(*r)) for r in replies)
    out = {"done": [], "valid": []}

    async def bench(ctx):
        t = 0
        while len(sink.got) < total:
            assert t < 40 * total + 100, f"cycle {t}: {len(sink.got)} of {total} bytes"
            for s in (hdr_src, words_src, sink):
                s.drive(ctx)
            done = ctx.get(dut.done)
            out["valid"].append(ctx.get(dut.o.valid))
            hdr_src.observe(ctx)
            words_src.observe(ctx)
            sink.observe(ctx, t)
            if done:
                out["done"].append(len(sink.got))
            await ctx.tick()
            t += 1
        for _ in range(8):                      # nothing more comes out
            ctx.set(dut.o.ready, 1)
            assert not ctx.get(dut.o.valid) and not ctx.get(dut.done)
            await ctx.tick()
        assert hdr_src.done and words_src.done

    simulate(dut, bench)
    return bytes(sink.got), out["done"], out["valid"]


def _replies(rng, n: int):
    out = []
    for _ in range(n):
        count = int(rng.integers(0, 4)) if rng.random() < 0.5 else int(rng.integers(0, 40))
        out.append((int(rng.integers(0, 256)), int(rng.integers(0, 256)), _u32(rng),
                    _words(rng, count)))
    return out


def check_sender(replies, got: bytes, done: list[int]) -> None:
    want = b"".join(reply_frame(*r) for r in replies)
    assert got == want, (f"{len(got)} bytes, {len(want)} expected\n  rtl:       "
                         f"{got.hex()}\n  reference: {want.hex()}")
    pos, ends = 0, []
    for k, (cmd, code, detail, payload) in enumerate(replies):
        parsed = parse_reply(got[pos:])
        assert parsed[:4] == (cmd, code, detail, payload), (
            f"reply {k}: rtl {parsed[:4]}, sent {(cmd, code, detail, payload)}")
        pos += parsed[4]
        ends.append(pos)
    assert done == ends, f"done after bytes {done}, replies end at {ends}"


@pytest.mark.parametrize("p_hdr,p_words,p_ready", [(0.3, 0.5, 0.5), (0.8, 0.9, 0.3),
                                                    (0.2, 0.3, 0.9)])
def test_sender_random(p_hdr, p_words, p_ready) -> None:
    rng = _rng(f"test_sender_random_{p_hdr}_{p_words}_{p_ready}")
    replies = _replies(rng, 60)
    got, done, _ = run_sender(replies, rng, p_hdr=p_hdr, p_words=p_words, p_ready=p_ready)
    check_sender(replies, got, done)
    print(f"{len(replies)} replies, {len(got)} bytes")


def test_sender_throughput() -> None:
    """One byte a cycle with ``o`` always ready and ``words`` always valid, replies back
    to back: ``o.valid`` never drops from the first byte to the last."""
    rng = _rng("test_sender_throughput")
    replies = _replies(rng, 20)
    got, done, valid = run_sender(replies, rng, p_hdr=1.0, p_words=1.0, p_ready=1.0)
    check_sender(replies, got, done)
    first = valid.index(1)
    assert valid[first:] == [1] * len(got), f"bubbles: {valid[first:].count(0)}"
    print(f"{len(got)} bytes in {len(valid) - first} cycles after the first")


def test_receiver_junk_saturates() -> None:
    """``junk`` counts bytes that are not the sync byte while hunting and stops at its
    largest value."""
    dut = FrameReceiver(BUF, TIMEOUT)
    out = {}

    async def bench(ctx):
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.i.payload, SYNC_REQUEST ^ 0xFF)
        await ctx.tick().repeat(0xFFFF - 3)
        out["before"] = ctx.get(dut.junk)
        await ctx.tick().repeat(10)
        out["after"] = ctx.get(dut.junk)

    start = time.monotonic()
    simulate(dut, bench)
    print(out, f"{time.monotonic() - start:.1f} s")
    assert out == {"before": 0xFFFF - 3, "after": 0xFFFF}, out
