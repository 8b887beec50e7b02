"""cocotb testbench of the system top behind its UART (``rtl/system/system.py``): the host
driver (``scripts/host.py``) runs over a simulated serial link that drives the top's ``rx``
pin bit by bit and decodes its ``tx`` pin, so every byte crosses the UART, the frame
receiver, the executor, the decoder and the loader.

The job (JSON in ``DS_JOB``) holds ``divisor`` (clock cycles a bit) and a list of
``steps``:

* ``{"layer": {...}}``: ``w``, ``a``, ``stride``, ``pad``, ``requant`` (or null), ``relu``,
  ``bias`` (optional), ``weight_format``, ``act_format``: the layer through
  ``Board.run_layer`` (its load pipelined); the record holds what ``scripts/layer.py``
  makes its stats from, plus the load's bytes, requests and cycles;
* ``{"rerun": true}``: the last layer started again without loading it, its record;
* ``{"frames": [hex, ...]}``: raw request bytes sent one frame at a time, each reply
  recorded as ``[code, detail, words, stray]`` (``stray``: bytes that arrived in the
  pause after a refused reply, 0 from a sound system; a frame that gets no reply records
  null), and the cycles the step took;
* ``{"read": [addr, n]}``: words read (to check that refused frames wrote nothing);
* ``{"status": true}``: the STATUS words.
"""

from __future__ import annotations

import json
import os
from collections import deque

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly, RisingEdge

from doublesparse.rtl.system.protocol import FRAME_TIMEOUT_BYTES, Reply
from doublesparse.scripts.host import Board, LinkTimeout, LoadStats
from doublesparse.sim.config import Config
from doublesparse.sim.conv import make_job
from doublesparse.tb.cocotb_util import start_and_reset

#: cycles a frame of the ``frames`` step may wait for its reply (the frames are small: the
#: timeout, a LOAD's two decode passes and the reply fit well within)
FRAME_REPLY_CYCLES = 100_000


class SimLink:
    """The board's UART pins as a byte link: bytes sent back to back at ``divisor`` cycles
    a bit; the ``tx`` pin sampled in the middle of each bit by a background task."""

    def __init__(self, dut, divisor: int, timeout_cycles: int):
        self.dut, self.div, self.timeout = dut, divisor, timeout_cycles
        self.rx: deque[int] = deque()
        cocotb.start_soon(self._receive())

    def now(self) -> float:
        """Clock cycles since the start (the link's time unit)."""
        return cocotb.utils.get_sim_time("ns") / 10

    async def send(self, data: bytes) -> None:
        d = self.dut
        for byte in data:
            for bit in [0] + [byte >> i & 1 for i in range(8)] + [1]:
                d.rx.value = bit
                await ClockCycles(d.clk, self.div)

    async def _receive(self) -> None:
        d = self.dut
        while True:
            await FallingEdge(d.tx)
            await ClockCycles(d.clk, self.div // 2)
            byte = 0
            for i in range(8):
                await ClockCycles(d.clk, self.div)
                byte |= int(d.tx.value) << i
            await ClockCycles(d.clk, self.div)
            assert int(d.tx.value) == 1, "tx: stop bit is 0"
            self.rx.append(byte)

    async def recv(self, n: int) -> bytes:
        waited = 0
        while len(self.rx) < n:
            if waited > self.timeout:
                raise LinkTimeout(f"{len(self.rx)} of {n} reply bytes after {waited} cycles")
            await ClockCycles(self.dut.clk, 10 * self.div)
            waited += 10 * self.div
        return bytes(self.rx.popleft() for _ in range(n))

    async def resync(self) -> bytes:
        """Silent for ``FRAME_TIMEOUT_BYTES`` byte times and one more (the system's pause
        after a refusal); the bytes that arrived meanwhile."""
        await ClockCycles(self.dut.clk, (FRAME_TIMEOUT_BYTES + 1) * 10 * self.div)
        out = bytes(self.rx)
        self.rx.clear()
        return out


def _layer_job(s: dict, cfg: Config):
    w, a = np.array(s["w"], dtype=np.int64), np.array(s["a"], dtype=np.int64)
    rq = None if s["requant"] is None else (np.array(s["requant"][0]),
                                             np.array(s["requant"][1]))
    return w, a, make_job(w, a, cfg, s["stride"], s["pad"], rq, s["relu"],
                          bias=s.get("bias"))


async def _frames(board: Board, link: SimLink, frames: list[str]) -> dict:
    recs = []
    t0 = link.now()
    for hexframe in frames:
        await link.send(bytes.fromhex(hexframe))
        link.timeout, timeout = FRAME_REPLY_CYCLES, link.timeout
        try:
            _, code, detail, words, _ = await board.recv_reply()
            stray = len(await link.resync()) if code != Reply.OK else 0
            recs.append([code, detail, words, stray])
        except LinkTimeout:
            recs.append(None)
        link.timeout = timeout
    return {"replies": recs, "cycles": link.now() - t0}


@cocotb.test()
async def system_job(dut):
    with open(os.environ["DS_JOB"]) as f:
        job = json.load(f)
    cfg = Config.from_dict(job["cfg"])
    dut.rx.value = 1
    await start_and_reset(dut, [])
    div = job["divisor"]
    link = SimLink(dut, div, job.get("timeout_cycles", 2_000_000))
    board = Board(link, cfg)
    out = {"steps": []}
    last = None
    for step in job["steps"]:
        if "layer" in step:
            s = step["layer"]
            w, a, last = _layer_job(s, cfg)
            t0 = cocotb.utils.get_sim_time("ns")
            board.stats = LoadStats()
            await board.load_job(last, w, a, s["weight_format"], s["act_format"])
            load_ns = cocotb.utils.get_sim_time("ns") - t0
            st = board.stats
            rec = await board.run_layer_loaded(last)
            rec.update(load_request_bytes=st.request_bytes, load_reply_bytes=st.reply_bytes,
                       load_requests=st.requests, load_pipelined=st.pipelined,
                       load_ns=load_ns, load_request_cycles=st.load_time,
                       images=dict(st.images))
            out["steps"].append(rec)
        elif "rerun" in step:
            out["steps"].append(await board.run_layer_loaded(last))
        elif "frames" in step:
            out["steps"].append(await _frames(board, link, step["frames"]))
        elif "read" in step:
            out["steps"].append({"words": await board.read(*step["read"])})
        elif "status" in step:
            out["steps"].append(await board.status())
    await RisingEdge(dut.clk)
    await ReadOnly()
    with open(job["out"], "w") as f:
        json.dump(out, f)
