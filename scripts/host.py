"""Host driver: the system's command protocol (``rtl/system/protocol.py``) over a byte link.

One API, :class:`Board`, over two links: :class:`SerialLink` (a real serial port, through
``pyserial``) and the simulated UART of ``tb/cocotb_system.py`` (bytes driven on the system
top's receive pin under cocotb). The methods are coroutines so that the simulated link can
wait on the simulator; with a serial port, :func:`run_sync` runs one to completion.

* :meth:`Board.write`, :meth:`Board.read`, :meth:`Board.status`, :meth:`Board.start`: the
  commands, split into requests that fit the frame buffer;
* :meth:`Board.load`: a tensor as memory images in a chosen format (bitmap, rle, nm; split
  along its second axis until each image fits a request), decoded by the hardware;
* :meth:`Board.run_layer`: a whole layer (``sim.conv.make_job``): weights and activations
  as images, KMAP / MULT / SHIFT / BIAS and the descriptor as words (the load's requests
  pipelined), start, wait, read the outputs and the counters.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ..rtl.engine.regmap import DESC, REG, REGION, REGION_SHIFT, out_index
from ..rtl.system.protocol import (
    FRAME_TIMEOUT_BYTES,
    HEADER_WORDS,
    LOAD_WORDS,
    STATUS_FIELDS,
    Cmd,
    ProtocolError,
    Reply,
    Target,
    parse_reply,
    request_frame,
)
from ..rtl.system.system import FRAME_WORDS, RX_FIFO_BYTES
from ..sim.config import Config
from ..sim.conv import Job
from ..sim.formats import encode

__all__ = ["Board", "RequestRefused", "LinkTimeout", "SerialLink", "run_sync", "FORMATS",
           "LoadStats"]

FORMATS = ("bitmap", "rle", "nm")
_DESC_FIELDS = {"C": "C", "H": "H", "W": "W", "K": "K", "R": "R", "S": "S",
                "STRIDE": "stride", "PAD": "pad", "F": "F", "NCH": "nch", "HO": "Ho",
                "WO": "Wo"}


class LinkTimeout(TimeoutError):
    """The board did not answer in time."""


class RequestRefused(RuntimeError):
    """The system refused a request (its :class:`Reply` code and detail); ``dropped``: the
    requests sent behind it, which the system dropped unexecuted."""

    def __init__(self, cmd: int, code: int, detail: int, dropped: int = 0):
        self.cmd, self.code, self.detail, self.dropped = cmd, code, detail, dropped
        name = Reply(code).name if code in Reply._value2member_map_ else str(code)
        super().__init__(f"{Cmd(cmd).name if cmd in Cmd._value2member_map_ else cmd} "
                         f"refused: {name} (detail {detail})"
                         + (f"; {dropped} requests sent behind it dropped" if dropped else ""))


class SerialLink:
    """A serial port (``pyserial``), 8N1."""

    def __init__(self, port: str, baud: int, timeout_s: float = 5.0):
        try:
            import serial
        except ImportError:
            raise RuntimeError("the serial link needs pyserial (pip install pyserial)") \
                from None
        self.ser = serial.Serial(port, baud, timeout=timeout_s)
        self.baud = baud

    def now(self) -> float:
        return time.monotonic()

    async def send(self, data: bytes) -> None:
        self.ser.write(data)

    async def recv(self, n: int) -> bytes:
        data = self.ser.read(n)
        if len(data) < n:
            raise LinkTimeout(f"{self.ser.port}: {len(data)} of {n} reply bytes arrived")
        return data

    async def resync(self) -> bytes:
        """Stay silent until the system has resynchronised after a refusal
        (``FRAME_TIMEOUT_BYTES`` byte times and one more); the bytes that arrived
        meanwhile (none from a sound system)."""
        self.ser.flush()
        time.sleep((FRAME_TIMEOUT_BYTES + 1) * 10 / self.baud)
        return self.ser.read(self.ser.in_waiting) if self.ser.in_waiting else b""


def run_sync(coro):
    """Run a :class:`Board` coroutine on a link that never waits on a simulator."""
    return asyncio.run(coro)


@dataclass
class LoadStats:
    """Bytes exchanged by :meth:`Board.load_job` (LOAD and WRITE requests and their
    replies) and the link time the load took, from its first byte sent to its last reply
    byte received (``link.now()``: clock cycles on a simulated link; the request bytes
    over the line rate for that time are the load throughput)."""
    request_bytes: int = 0
    reply_bytes: int = 0
    requests: int = 0
    #: requests sent before the previous one's reply had arrived
    pipelined: int = 0
    load_time: float = 0.0
    images: dict = field(default_factory=dict)


@dataclass
class _Pending:
    cmd: int
    #: the reply's detail the host expects (a LOAD's entries and values), or None
    expect: int | None = None


class Board:
    """The system behind a link.

    Requests are pipelined (``protocol.py``): :meth:`submit` sends a request without
    waiting for its reply as long as at most one request is waiting and the new one fits
    the system's receive FIFO; replies are collected in order, and the first refused one
    raises :class:`RequestRefused` after the link has resynchronised (the system dropped
    the requests sent behind it). Every other method waits for its replies.

    Parameters
    ----------
    link
        ``await link.send(bytes)``; ``await link.recv(n)`` returns exactly n bytes;
        ``await link.resync()`` stays silent until the system drops no more bytes after a
        refusal and returns the bytes that arrived meanwhile; ``link.now()``.
    cfg : Config
        The system's config (memory sizes, PEs, formats' parameters).
    buffer_words : int
        The system's frame buffer (payload words a request may carry).
    fifo_bytes : int
        The system's receive FIFO (the largest request sent before the previous reply).
    """

    def __init__(self, link, cfg: Config, buffer_words: int = FRAME_WORDS,
                 fifo_bytes: int = RX_FIFO_BYTES):
        self.link, self.cfg = link, cfg
        self.buffer_words, self.fifo_bytes = buffer_words, fifo_bytes
        self.stats = LoadStats()
        self.sent = self.received = 0              # bytes over the link
        self.requests = self.pipelined = 0         # requests sent; of those, pipelined
        self._pending: deque[_Pending] = deque()

    async def submit(self, cmd: int, arg: int = 0, payload=(), count: int | None = None,
                     expect: int | None = None) -> None:
        """Send a request without waiting for its reply (after collecting the replies
        the pipelining rule needs first); ``expect``: the reply detail it must bring."""
        frame = request_frame(cmd, arg, list(payload), count)
        while self._pending and (len(self._pending) > 1 or len(frame) > self.fifo_bytes):
            await self._collect()
        await self.link.send(frame)
        self.sent += len(frame)
        self.requests += 1
        self.pipelined += bool(self._pending)
        self._pending.append(_Pending(cmd, expect))

    async def flush(self) -> None:
        """Collect every reply still due."""
        while self._pending:
            await self._collect()

    async def _collect(self, refuse_ok: bool = False) -> tuple[int, int, list[int]]:
        p = self._pending.popleft()
        rcmd, code, detail, words, length = await self.recv_reply()
        self.received += length
        if rcmd != p.cmd:
            raise ProtocolError(f"reply to command {rcmd}, expected {p.cmd}")
        if code != Reply.OK:
            dropped = len(self._pending)
            self._pending.clear()
            stray = await self.link.resync()
            if stray:
                raise ProtocolError(f"{len(stray)} bytes after a refused reply: {stray.hex()}")
            if not refuse_ok or dropped:
                raise RequestRefused(rcmd, code, detail, dropped)
        elif p.expect is not None and detail != p.expect:
            raise RuntimeError(f"{Cmd(rcmd).name}: reply detail 0x{detail:08x}, expected "
                               f"0x{p.expect:08x}")
        return code, detail, words

    async def request(self, cmd: int, arg: int = 0, payload=(), count: int | None = None,
                      refuse_ok: bool = False) -> tuple[int, int, list[int]]:
        """One request and its reply: ``(code, detail, words)``; a refused request raises
        :class:`RequestRefused` unless ``refuse_ok``."""
        await self.flush()
        await self.submit(cmd, arg, payload, count)
        return await self._collect(refuse_ok)

    async def recv_reply(self) -> tuple[int, int, int, list[int], int]:
        """The next reply from the link: ``protocol.parse_reply``'s tuple."""
        head = await self.link.recv(1 + 4 * HEADER_WORDS)
        n = int.from_bytes(head[1:5], "little") >> 16
        return parse_reply(head + await self.link.recv(4 * (n + 1)))

    async def write(self, addr: int, words, wait: bool = True) -> None:
        """Words to ``addr, addr + 1, ...`` (several requests if need be); without
        ``wait`` the replies are collected by a later request or :meth:`flush`."""
        words = [int(w) & 0xFFFF_FFFF for w in words]
        for i in range(0, len(words), self.buffer_words):
            await self.submit(Cmd.WRITE, addr + i, words[i:i + self.buffer_words])
        if wait:
            await self.flush()

    async def read(self, addr: int, n: int) -> list[int]:
        out: list[int] = []
        while len(out) < n:
            k = min(n - len(out), 0xFFFF)
            out += (await self.request(Cmd.READ, addr + len(out), count=k))[2]
        return out

    async def status(self) -> dict[str, int]:
        words = (await self.request(Cmd.STATUS))[2]
        return {name: w for (name, _), w in zip(STATUS_FIELDS, words, strict=True)}

    async def start(self, ctrl: int = 1) -> None:
        await self.request(Cmd.START, ctrl)

    def image_counts(self, target: Target, x: np.ndarray) -> tuple[int, int]:
        """(entries, weight values) that tensor ``x`` (C, A, B) becomes in the memories:
        ``ceil(C / scan_width)`` entries a position; a WGT tensor's nonzeros as values."""
        S = self.cfg.scan_width
        entries = x.shape[1] * x.shape[2] * -(-x.shape[0] // S)
        return entries, int(np.count_nonzero(x)) if target == Target.WGT else 0

    async def load(self, target: Target, x: np.ndarray, fmt: str, pe: int = 0,
                   entry0: int = 0, value0: int = 0, wait: bool = True) -> tuple[int, int]:
        """Tensor ``x`` (C, A, B) as ``fmt`` images, split along A until each fits a
        request, each LOAD's reply checked against the entries and values its image
        holds (:meth:`image_counts`); returns (entries, values) in all. Without ``wait``
        the replies are collected (and checked) by a later request or :meth:`flush`."""
        if fmt not in FORMATS:
            raise ValueError(f"format {fmt!r}: expected one of {', '.join(FORMATS)}")
        entries = values = 0
        rows = x.shape[1]
        start = 0
        while start < rows:
            n = rows - start
            while True:
                image = encode(x[:, start:start + n], fmt, self.cfg)
                if len(image) + LOAD_WORDS <= self.buffer_words:
                    break
                if n == 1:
                    raise ValueError(f"one row of a {x.shape} tensor is a {len(image)}-word "
                                     f"{fmt} image; a request holds {self.buffer_words}")
                n = (n + 1) // 2
            e, v = self.image_counts(target, x[:, start:start + n])
            desc = [int(target) | pe << 8, entry0 + entries, value0 + values]
            words = [int(w) for w in np.asarray(image, dtype=np.uint32)]
            await self.submit(Cmd.LOAD, 0, desc + words,
                              expect=(e & 0xFFFF) | (v & 0xFFFF) << 16)
            entries, values = entries + e, values + v
            self.stats.images[fmt] = self.stats.images.get(fmt, 0) + 1
            start += n
        if wait:
            await self.flush()
        return entries, values

    async def load_job(self, job: Job, w: np.ndarray, a: np.ndarray, weight_format: str,
                       act_format: str) -> None:
        """The job's memories: the activations and every PE's weights as images; KMAP,
        MULT, SHIFT, BIAS and the descriptor as words; all requests pipelined, the load's
        bytes and time added to :attr:`stats`."""
        from ..rtl.engine.layouts import fmax_slots

        await self.flush()
        cfg, L = self.cfg, job.layer
        t0, sent0, received0 = self.link.now(), self.sent, self.received
        requests0, pipelined0 = self.requests, self.pipelined
        await self.load(Target.ACT, a.reshape(L.C, L.H, L.W), act_format, wait=False)
        for p, slots in enumerate(job.slots):
            wp = np.zeros((job.F,) + w.shape[1:], dtype=np.int64)
            for j, k in enumerate(slots):
                wp[j] = w[k]
            # (C, F * R, S): the PE's filters channels first, positions (slot, r, s)
            t = wp.transpose(1, 0, 2, 3).reshape(L.C, job.F * L.R, L.S)
            _, nvals = await self.load(Target.WGT, t, weight_format, pe=p, wait=False)
            if nvals != len(job.wval[p]):
                raise RuntimeError(f"PE {p}: {nvals} weight values loaded, the job has "
                                   f"{len(job.wval[p])}")
        fm = fmax_slots(cfg)
        kmap = [0] * (cfg.pes * fm)
        for p, ks in enumerate(job.kmap):
            for j, k in enumerate(ks):
                kmap[p * fm + j] = k & 0xFFFF_FFFF
        await self.write(REGION["KMAP"] << REGION_SHIFT, kmap, wait=False)
        await self.write(REGION["MULT"] << REGION_SHIFT, job.mult, wait=False)
        await self.write(REGION["SHIFT"] << REGION_SHIFT, job.shift, wait=False)
        await self.write(REGION["BIAS"] << REGION_SHIFT, [b & 0xFFFF_FFFF for b in job.bias],
                         wait=False)
        d = job.descriptor()
        values = {REG[name]: d["raw"] | d["relu"] << 1 if name == "MODE"
                  else d[_DESC_FIELDS[name]] for name in DESC}
        first = min(values)
        if sorted(values) == list(range(first, first + len(values))):  # one request
            await self.write(first, [values[a] for a in sorted(values)], wait=False)
        else:
            for addr, value in values.items():
                await self.write(addr, [value], wait=False)
        await self.flush()
        st = self.stats
        st.load_time += self.link.now() - t0
        st.request_bytes += self.sent - sent0
        st.reply_bytes += self.received - received0
        st.requests += self.requests - requests0
        st.pipelined += self.pipelined - pipelined0

    async def run_layer(self, job: Job, w: np.ndarray, a: np.ndarray,
                        weight_format: str = "bitmap", act_format: str = "bitmap",
                        polls: int = 10_000) -> dict:
        """Load, start, wait for done (STATUS polled at most ``polls`` times), read the
        counters and the outputs; returns the record ``scripts/layer.py`` makes its stats
        from (``status``, ``error``, ``cycles``, ``macs``, ``pe_busy``, ``pe_macs``,
        ``out`` in (k, y, x) order)."""
        await self.load_job(job, w, a, weight_format, act_format)
        return await self.run_layer_loaded(job, polls)

    async def run_layer_loaded(self, job: Job, polls: int = 10_000) -> dict:
        """:meth:`run_layer` after :meth:`load_job`."""
        await self.start(1)
        for _ in range(polls):
            st = await self.status()
            if not st["engine_status"] & 1:         # busy bit clear
                break
        else:
            raise LinkTimeout(f"the engine was still busy after {polls} STATUS polls")
        L = job.layer
        status = st["engine_status"]
        r = {"status": status, "busy": status & 1, "done": status >> 1 & 1,
             "error": status >> 4 & 0xF, "hung": False}
        r["ignored"], r["cycles"], r["macs"] = await self._counters()
        P = self.cfg.pes
        r["pe_busy"] = await self.read(REG["PE_BUSY"], P)
        r["pe_macs"] = await self.read(REG["PE_MACS"], P)
        npix = L.Ho * L.Wo
        n = L.K * npix if r["error"] == 0 else 0
        raw = await self.read(REGION["OUT"] << REGION_SHIFT, n) if n else []
        lanes = self.cfg.out_lanes
        out = []
        for i in range(n):   # (k, y, x) order, read where regmap.out_index puts them
            v = raw[out_index(i // npix, i % npix, npix, lanes)]
            out.append(v - (1 << 32) if v >> 31 else v)
        r["out"] = out
        return r

    async def _counters(self) -> tuple[int, int, int]:
        """IGNORED, CYCLES, MACS."""
        cycles, macs, ignored = await self.read(REG["CYCLES"], 3)
        return ignored, cycles, macs
