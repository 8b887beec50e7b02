"""cocotb testbench of the system top behind its UART (``rtl/system/system.py``): the host
driver (``scripts/host.py``) runs over a simulated serial link that drives the top's ``rx``
pin bit by bit and decodes its ``tx`` pin, so every byte crosses the UART, the frame
receiver, the executor, the decoder and the loader.

The job (JSON in ``DS_JOB``) holds ``divisor`` (clock cycles a bit) and a list of
``steps``:

* ``{"layer": {...}}``: ``w``, ``a``, ``stride``, ``pad``, ``requant`` (or null), ``relu``,
  ``weight_format``, ``act_format``: the layer through ``Board.run_layer``; the record
  holds what ``scripts/layer.py`` makes its stats from, plus the load's bytes and cycles;
* ``{"frames": [hex, ...]}``: raw request bytes sent one frame at a time, each reply
  recorded (``[code, detail, words]``; a frame that gets no reply records null);
* ``{"read": [addr, n]}``: words read (to check that refused frames wrote nothing).
"""

from __future__ import annotations

import json
import os
from collections import deque

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly, RisingEdge

from doublesparse.scripts.host import Board, LinkTimeout
from doublesparse.sim.config import Config
from doublesparse.sim.conv import make_job
from doublesparse.tb.cocotb_util import start_and_reset


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
    for step in job["steps"]:
        if "layer" in step:
            s = step["layer"]
            w, a = np.array(s["w"], dtype=np.int64), np.array(s["a"], dtype=np.int64)
            rq = None if s["requant"] is None else (np.array(s["requant"][0]),
                                                     np.array(s["requant"][1]))
            jb = make_job(w, a, cfg, s["stride"], s["pad"], rq, s["relu"])
            t0 = cocotb.utils.get_sim_time("ns")
            board.stats.request_bytes = board.stats.reply_bytes = 0
            board.stats.load_time = 0.0
            await board.load_job(jb, w, a, s["weight_format"], s["act_format"])
            load_ns = cocotb.utils.get_sim_time("ns") - t0
            rec = await board.run_layer_loaded(jb)
            rec.update(load_request_bytes=board.stats.request_bytes,
                       load_reply_bytes=board.stats.reply_bytes,
                       load_ns=load_ns,
                       load_request_cycles=board.stats.load_time,
                       images=dict(board.stats.images))
            out["steps"].append(rec)
        elif "frames" in step:
            recs = []
            for hexframe in step["frames"]:
                await link.send(bytes.fromhex(hexframe))
                try:
                    _, code, detail, words, _ = await board.recv_reply()
                    recs.append([code, detail, words])
                except LinkTimeout:
                    recs.append(None)
            out["steps"].append({"replies": recs})
        elif "read" in step:
            out["steps"].append({"words": await board.read(*step["read"])})
    await RisingEdge(dut.clk)
    await ReadOnly()
    with open(job["out"], "w") as f:
        json.dump(out, f)
