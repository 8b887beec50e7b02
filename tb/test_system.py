"""The system top's byte-stream side (``rtl/system/system.py:StreamSystem``) in Amaranth's
simulator, driven by the host driver (``scripts/host.py``) over an in-simulator byte link:
whole layers with the weights sent in each image format, against the golden convolution;
and corrupted requests (frames and images), each refused with its code, after which the
previous layer's memories and descriptor are intact and the next job is correct; bytes
behind a refused request (a frame in a frame, a pipelined request) dropped. The same
path behind the UART pins runs under Verilator and Icarus in ``tb/test_system_cocotb.py``."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator

from doublesparse.rtl.engine.regmap import REG
from doublesparse.rtl.system.protocol import (
    LOAD_WORDS,
    Cmd,
    ProtocolError,
    Reply,
    Target,
    parse_reply,
    request_frame,
)
from doublesparse.rtl.system.system import StreamSystem
from doublesparse.scripts.host import Board, RequestRefused
from doublesparse.sim.config import Config
from doublesparse.sim.conv import conv2d_golden, make_job, requantize
from doublesparse.sim.formats import encode, prune_nm
from doublesparse.tb.streams import seed_for

CFG = Config().replace(pes=2, act_mem_chunks=64, wgt_mem_chunks=128, wval_mem_words=1024,
                       out_mem_words=1024, max_filters=16)
BUFFER = 512
TIMEOUT = 120
FIFO = 256        # receive FIFO bytes: some of the layer's requests fit it, some do not


class StreamLink:
    """The driver's link on the system's byte streams, with random gaps: a byte is offered
    with probability ``p_send`` a cycle (and held until taken), reply bytes are taken with
    probability ``p_recv`` a cycle, in both directions at once (a pipelined request's
    reply leaves while the next request is sent)."""

    def __init__(self, dut, ctx, rng, p_send: float = 0.8, p_recv: float = 0.7):
        self.dut, self.ctx, self.rng = dut, ctx, rng
        self.p_send, self.p_recv = p_send, p_recv
        self.buf = bytearray()
        self.cycles = 0

    def now(self) -> int:
        """Clock cycles this link has waited (its time unit)."""
        return self.cycles

    async def _cycle(self, byte: int | None = None) -> bool:
        """One cycle; offers ``byte`` if given; True if it was taken."""
        ctx, d = self.ctx, self.dut
        ctx.set(d.i.valid, byte is not None)
        if byte is not None:
            ctx.set(d.i.payload, byte)
        ctx.set(d.o.ready, self.rng.random() < self.p_recv)
        taken = byte is not None and ctx.get(d.i.ready)
        if ctx.get(d.o.valid) and ctx.get(d.o.ready):
            self.buf.append(ctx.get(d.o.payload))
        await ctx.tick()
        self.cycles += 1
        return taken

    async def send(self, data: bytes) -> None:
        for b in data:
            while self.rng.random() >= self.p_send:
                await self._cycle()
            while not await self._cycle(b):
                pass
        self.ctx.set(self.dut.i.valid, 0)

    async def recv(self, n: int) -> bytes:
        while len(self.buf) < n:
            await self._cycle()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    async def quiet(self, cycles: int) -> bytes:
        """Every byte that arrives until ``cycles`` cycles pass without one."""
        idle = 0
        while idle < cycles:
            before = len(self.buf)
            await self._cycle()
            idle = 0 if len(self.buf) > before else idle + 1
        out = bytes(self.buf)
        self.buf.clear()
        return out

    async def resync(self) -> bytes:
        """Silent until the system's flush after a refusal is over (the timeout)."""
        return await self.quiet(TIMEOUT + 2)

    async def drain(self, quiet: int, budget: int = 20_000) -> list:
        """Every reply that arrives until ``quiet`` cycles pass without a byte after the
        first (waited for at most ``budget`` cycles: a LOAD decodes its image twice)."""
        for _ in range(budget):
            if self.buf:
                break
            await self._cycle()
        replies, data = [], await self.quiet(quiet)
        while data:
            try:
                cmd, code, detail, words, length = parse_reply(data)
            except ProtocolError as e:
                raise AssertionError(f"unparsable reply bytes {data.hex()}: {e}") from None
            replies.append((cmd, code, detail))
            data = data[length:]
        return replies


def _run(bench) -> None:
    dut = StreamSystem(CFG, TIMEOUT, BUFFER, FIFO)
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def top(ctx):
        await bench(dut, ctx)

    sim.add_testbench(top)
    sim.run()


def _layer(rng, C=16, K=16, H=4, W=4, dw=0.5, da=0.5):
    w = np.where(rng.random((K, C, 3, 3)) < dw, rng.integers(-128, 128, (K, C, 3, 3)), 0)
    a = np.where(rng.random((C, H, W)) < da, rng.integers(-128, 128, (C, H, W)), 0)
    return w.astype(np.int64), a.astype(np.int64)


def _check(r: dict, want: np.ndarray, what: str) -> None:
    assert r["error"] == 0, f"{what}: engine error {r['error']}"
    got = np.array(r["out"]).reshape(want.shape)
    bad = np.argwhere(got != want)
    assert not len(bad), (f"{what}: {len(bad)} outputs differ, first at {tuple(bad[0])}: "
                          f"RTL {got[tuple(bad[0])]}, golden {want[tuple(bad[0])]}")


@pytest.mark.parametrize("wfmt,afmt,requant", [("bitmap", "bitmap", False),
                                               ("rle", "rle", True), ("nm", "bitmap", False)])
def test_layer_through_the_protocol(wfmt, afmt, requant) -> None:
    seed = seed_for(f"system_layer_{wfmt}_{afmt}")
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    w, a = _layer(rng)
    if wfmt == "nm":   # N:M along the channels, the axis the images compress
        w = prune_nm(w.transpose(1, 0, 2, 3), CFG.nm_n, CFG.nm_m).transpose(1, 0, 2, 3)
    rq = (rng.integers(1, 200, 16), rng.integers(8, 14, 16)) if requant else None
    acc = conv2d_golden(w, a, 1, 1)
    want = acc if rq is None else requantize(acc, *rq, relu=True)

    async def bench(dut, ctx):
        board = Board(StreamLink(dut, ctx, rng), CFG, BUFFER, FIFO)
        job = make_job(w, a, CFG, 1, 1, rq, True)
        r = await board.run_layer(job, w, a, weight_format=wfmt, act_format=afmt)
        _check(r, want, f"{wfmt} weights, {afmt} activations")
        st = board.stats
        print(f"load: {st.requests} requests ({st.pipelined} sent before the previous "
              f"reply), {st.request_bytes} bytes in {st.load_time} cycles")
        assert st.images[wfmt] >= 1 and st.pipelined >= 1, st

    _run(bench)


def _flip(frame: bytes, rng, lo: int = 1) -> bytes:
    b = bytearray(frame)
    i = int(rng.integers(lo, len(b)))
    b[i] ^= 1 << int(rng.integers(0, 8))
    return bytes(b)


def test_corrupted_requests_change_nothing() -> None:
    """A layer is loaded and run; then corrupted requests of every kind (frame bit flips,
    truncations, image bit flips under a correct frame CRC, bad LOAD targets, images past
    the memory, writes to the descriptor with a bad CRC); every one is refused with a code
    that fits it, and the same layer, started again without reloading, gives the same
    outputs, with the descriptor unchanged."""
    seed = seed_for("system_corrupted")
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    w, a = _layer(rng)
    want = conv2d_golden(w, a, 1, 1)
    small = np.where(rng.random((16, 1, 2)) < 0.5, 7, 0)
    counts: dict[str, int] = {}

    async def bench(dut, ctx):
        link = StreamLink(dut, ctx, rng)
        board = Board(link, CFG, BUFFER, FIFO)
        job = make_job(w, a, CFG, 1, 1, None, True)
        _check(await board.run_layer(job, w, a), want, "first run")
        desc = await board.read(REG["C"], 13)
        for t in range(300):
            kind = ["frame_flip", "truncate", "image_flip", "bad_target", "too_big",
                    "write_flip"][t % 6]
            fmt = ["bitmap", "rle", "nm"][t % 3]
            x = small if fmt != "nm" else np.zeros_like(small)
            image = [int(v) for v in encode(x, fmt, CFG)]
            target = int(rng.integers(0, 2))
            load = request_frame(Cmd.LOAD, 0, [target | 1 << 8, 0, 0] + image)
            if kind == "frame_flip":
                frame, ok = _flip(load, rng), {Reply.BAD_CRC, Reply.TIMEOUT,
                                                Reply.BAD_CMD, Reply.BAD_LENGTH}
            elif kind == "truncate":
                frame = load[:int(rng.integers(1, len(load)))]
                ok = {Reply.TIMEOUT}
            elif kind == "image_flip":
                k = int(rng.integers(0, len(image)))
                image[k] ^= 1 << int(rng.integers(0, 32))
                frame = request_frame(Cmd.LOAD, 0, [target | 1 << 8, 0, 0] + image)
                ok = {Reply.BAD_IMAGE}
            elif kind == "bad_target":
                bad = [2 | 0 << 8, int(Target.WGT) | CFG.pes << 8][t % 2]
                frame, ok = request_frame(Cmd.LOAD, 0, [bad, 0, 0] + image), {Reply.BAD_TARGET}
            elif kind == "too_big":
                depth = CFG.wgt_mem_chunks if target else CFG.act_mem_chunks
                frame = request_frame(Cmd.LOAD, 0, [target | 1 << 8, depth - 1, 0] + image)
                ok = {Reply.TOO_BIG}
            else:
                frame = _flip(request_frame(Cmd.WRITE, REG["C"], [999, 999]), rng)
                ok = {Reply.BAD_CRC, Reply.TIMEOUT, Reply.BAD_CMD, Reply.BAD_LENGTH}
            await link.send(frame)
            replies = await link.drain(TIMEOUT + 50)
            assert len(replies) == 1, f"request {t} ({kind}): replies {replies}"
            _cmd, code, detail = replies[0]
            assert code in ok, (f"request {t} ({kind}, {fmt}): reply code {Reply(code).name} "
                                f"(detail {detail}), expected one of {[c.name for c in ok]}")
            counts[Reply(code).name] = counts.get(Reply(code).name, 0) + 1
        assert await board.read(REG["C"], 13) == desc, "the descriptor changed"
        _check(await board.run_layer_loaded(job), want, "run after the corrupted requests")
        st = await board.status()
        assert st["refused"] >= 300, st

    _run(bench)
    print("refusals by code:", counts)
    assert sum(counts.values()) == 300 and len(counts) >= 5, counts
    assert LOAD_WORDS == 3


def _embedded(rng, inner: bytes, filler: int) -> bytes:
    """A WRITE whose payload holds ``filler`` random words and then the request ``inner``
    (a frame in the frame), with its count cut to 1: the receiver takes the second payload
    word as the CRC word, refuses the frame and meets the rest in what follows (still
    arriving after the refusal's reply when the filler is long)."""
    pad = bytes(int(b) for b in rng.integers(0, 256, 4 * filler)) + inner
    pad += bytes(int(b) for b in rng.integers(0, 256, -len(pad) % 4))
    words = [int.from_bytes(pad[k:k + 4], "little") for k in range(0, len(pad), 4)]
    frame = bytearray(request_frame(Cmd.WRITE, REG["K"], [5, 6] + words))
    frame[3:5] = (1).to_bytes(2, "little")          # H0's count
    return bytes(frame)


def test_refusal_drops_what_follows() -> None:
    """Resynchronisation after a refusal (``frame.py``): the bytes behind a refused frame
    are dropped until the line pauses for the timeout, whatever they hold: a whole valid
    WRITE inside a frame whose count was cut (BAD_CRC, behind 0 or 100 random words); a
    sync byte and a frame's start (or 200 random bytes and a valid WRITE) right after a
    frame with a bad CRC; a valid WRITE sent (pipelined) behind a LOAD that the decoder
    refuses. Exactly one reply each, the registers the WRITEs name unchanged; after the
    pause the next requests are taken."""
    seed = seed_for("system_resync")
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    bad_image = [int(v) for v in encode(np.full((16, 1, 2), 3), "bitmap", CFG)]
    bad_image[-1] ^= 1                                   # the image's body CRC

    async def bench(dut, ctx):
        link = StreamLink(dut, ctx, rng)
        board = Board(link, CFG, BUFFER, FIFO)
        await board.write(REG["C"], [16, 4, 4])
        before = await board.read(REG["C"], 3)
        poison = request_frame(Cmd.WRITE, REG["C"], [999, 999, 999])
        for t in range(12):     # each kind with a short and a long tail
            kind = ["embedded", "sync_after", "pipelined"][t % 3]
            if kind == "embedded":
                await link.send(_embedded(rng, poison, [0, 100][t % 2]))
                want = [Reply.BAD_CRC]
            elif kind == "sync_after":
                bad = bytearray(request_frame(Cmd.WRITE, REG["C"], [999]))
                bad[-1] ^= 0x10
                tail = (poison[:int(rng.integers(1, len(poison)))] if t % 2 == 0 else
                        bytes(int(b) for b in rng.integers(0, 256, 200)) + poison)
                await link.send(bytes(bad) + tail)
                want = [Reply.BAD_CRC]
            else:
                await board.submit(Cmd.LOAD, 0, [int(Target.ACT), 0, 0] + bad_image)
                # a long request behind it: still arriving when the refusal's reply leaves
                await board.submit(Cmd.WRITE, REG["C"], [999] * [3, 56][t % 2])
                with pytest.raises(RequestRefused) as e:
                    await board.flush()
                assert (e.value.code, e.value.dropped) == (Reply.BAD_IMAGE, 1), e.value
                want = []                           # the refusal was read by the driver
            if want:
                replies = await link.drain(TIMEOUT + 50)
                assert [r[1] for r in replies] == want, (
                    f"{kind}: replies {replies}, expected codes {want}")
            got = await board.read(REG["C"], 3)
            assert got == before, f"{kind}: C, H, W read {got}, were {before}"
        st = await board.status()
        assert st["refused"] == 12, st

    _run(bench)
