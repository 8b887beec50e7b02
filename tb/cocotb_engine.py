"""cocotb testbench for the engine's emitted Verilog: a host that loads the memories and the
descriptor over the host port, starts the job, waits for ``done`` (bounded), and reads the
status, the counters and the output memory.

The job (JSON in ``DS_JOB``) holds a list of *runs*; each has the memory images (``act``,
``wgt`` per PE, ``kmap`` per PE, ``mult``, ``shift``, ``bias``), the descriptor and the number of
output words to read. A run may also carry ``during``: host actions at given cycles after
its start command (``{"at": n, "write": [addr, value]}``, ``{"at": n, "abort": true}``,
``{"at": n, "reset": true}``: the engine's reset held for two cycles). Results go to the
job's ``out`` path; each run's record holds STATUS, the counters, IGNORED and the outputs.
"""

from __future__ import annotations

import json
import os

import cocotb
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly

from doublesparse.rtl.chunk import words_of
from doublesparse.rtl.engine import DESC, READ_LATENCY, REG, REGION
from doublesparse.rtl.engine.regmap import (
    REGION_SHIFT,
    chunk_address,
    entry_words,
    out_index,
)
from doublesparse.sim.config import Config
from doublesparse.tb.cocotb_util import start_and_reset

NAMES = {"C": "C", "H": "H", "W": "W", "K": "K", "R": "R", "S": "S", "STRIDE": "stride",
         "PAD": "pad", "F": "F", "NCH": "nch", "HO": "Ho", "WO": "Wo"}


class Host:
    def __init__(self, dut):
        self.dut = dut

    async def write(self, addr: int, value: int) -> None:
        d = self.dut
        d.host__addr.value = addr
        d.host__wdata.value = value & 0xFFFFFFFF
        d.host__we.value = 1
        await FallingEdge(d.clk)
        d.host__we.value = 0

    async def read(self, addr: int) -> int:
        d = self.dut
        d.host__addr.value = addr
        d.host__re.value = 1
        await FallingEdge(d.clk)
        d.host__re.value = 0
        for _ in range(READ_LATENCY - 1):     # rvalid READ_LATENCY cycles after re
            await ReadOnly()
            assert int(d.host__rvalid.value) == 0, "rvalid before READ_LATENCY"
            await FallingEdge(d.clk)
        await ReadOnly()
        assert int(d.host__rvalid.value) == 1
        v = int(d.host__rdata.value)
        await FallingEdge(d.clk)
        return v

    async def read_many(self, addrs: list[int]) -> list[int]:
        """Back-to-back reads, one issued per cycle (data READ_LATENCY cycles after each)."""
        d = self.dut
        out = []
        for i, a in enumerate(addrs + [None] * READ_LATENCY):
            if a is not None:
                d.host__addr.value = a
                d.host__re.value = 1
            else:
                d.host__re.value = 0
            await ReadOnly()
            if i >= READ_LATENCY:
                assert int(d.host__rvalid.value) == 1
                out.append(int(d.host__rdata.value))
            await FallingEdge(d.clk)
        return out


async def _actions(dut, host: Host, actions: list[dict]) -> int:
    """Host actions at given cycles after a command (see the module docstring); returns
    the cycles spent."""
    now = 0
    for act in sorted(actions, key=lambda a: a["at"]):
        if act["at"] > now:
            await ClockCycles(dut.clk, act["at"] - now)
            await FallingEdge(dut.clk)
            now = act["at"]
        if "write" in act:
            await host.write(*act["write"])
        elif act.get("abort"):
            await host.write(REG["CTRL"], 4)
        elif act.get("reset"):
            dut.rst.value = 1
            await ClockCycles(dut.clk, 2)
            await FallingEdge(dut.clk)
            dut.rst.value = 0
            now += 2
        now += 1
    return now


@cocotb.test()
async def engine_job(dut):
    with open(os.environ["DS_JOB"]) as f:
        job = json.load(f)
    cfg = Config.from_dict(job["cfg"])
    n_act, n_wgt = entry_words("ACT", cfg), entry_words("WGT", cfg)
    await start_and_reset(dut, list((dut.host__we, dut.host__re, dut.host__addr, dut.host__wdata)))
    host = Host(dut)
    out = {"runs": []}
    for run in job["runs"]:
        if run.get("load", True):
            for e, word in enumerate(run["act"] if run.get("load_act", True) else []):
                for w, v in enumerate(words_of(word, 32 * n_act)):
                    await host.write(chunk_address("ACT", e, w, cfg), v)
            for p, words in enumerate(run["wgt"]):
                for e, word in enumerate(words):
                    for w, v in enumerate(words_of(word, 32 * n_wgt)):
                        await host.write(chunk_address("WGT", e, w, cfg, pe=p), v)
            for p, values in enumerate(run["wval"]):
                for i, v in enumerate(values):
                    await host.write(((REGION["WVAL"] + p) << REGION_SHIFT) | i, v & 0xFF)
            fm = run["fmax_slots"]
            for p, ks in enumerate(run["kmap"]):
                for jj, k in enumerate(ks):
                    await host.write((REGION["KMAP"] << REGION_SHIFT) | (p * fm + jj), k)
            for k, (mu, sh, b) in enumerate(zip(run["mult"], run["shift"], run["bias"],
                                                strict=True)):
                await host.write((REGION["MULT"] << REGION_SHIFT) | k, mu)
                await host.write((REGION["SHIFT"] << REGION_SHIFT) | k, sh)
                await host.write((REGION["BIAS"] << REGION_SHIFT) | k, b & 0xFFFF_FFFF)
        desc = run["desc"]
        for name in DESC:
            if name == "MODE":
                await host.write(REG["MODE"], desc["raw"] | desc["relu"] << 1)
            else:
                await host.write(REG[name], desc[NAMES[name]])
        await host.write(REG["CTRL"], 1)
        budget = run["budget"]
        waited = await _actions(dut, host, run.get("during", []))
        status = await host.read(REG["STATUS"])
        first_status = status
        while status & 1 and waited < budget:
            await ClockCycles(dut.clk, 64)
            await FallingEdge(dut.clk)
            waited += 66
            status = await host.read(REG["STATUS"])
        if status & 1:
            dut._log.error(f"engine still busy after {waited} cycles (budget {budget})")
        res = {"status": status, "first_status": first_status, "busy": status & 1,
               "done": (status >> 1) & 1,
               "error": (status >> 4) & 0xF, "hung": bool(status & 1)}
        if not res["hung"]:
            res["ignored"] = await host.read(REG["IGNORED"])
            res["cycles"] = await host.read(REG["CYCLES"])
            res["macs"] = await host.read(REG["MACS"])
            P = len(run["wgt"]) or cfg.pes
            res["pe_busy"] = [await host.read(REG["PE_BUSY"] + p) for p in range(P)]
            res["pe_macs"] = [await host.read(REG["PE_MACS"] + p) for p in range(P)]
            # outputs in (k, y, x) order, read where regmap.out_index puts them
            npix = desc["Ho"] * desc["Wo"]
            n = run["n_out"] if res["error"] == 0 else 0
            raw = await host.read_many([
                (REGION["OUT"] << REGION_SHIFT) | out_index(i // npix, i % npix, npix,
                                                           cfg.out_lanes)
                for i in range(n)])
            res["out"] = [v - (1 << 32) if v >> 31 else v for v in raw]
        if run.get("encode") and not res["hung"]:
            # re-encode the int8 outputs into the activation memory for the next layer
            await host.write(REG["CTRL"], 2)
            waited = await _actions(dut, host, run.get("encode_during", []))
            status = await host.read(REG["STATUS"])
            res["encode_first_status"] = status
            while status & 1 and waited < budget:
                await ClockCycles(dut.clk, 64)
                await FallingEdge(dut.clk)
                waited += 66
                status = await host.read(REG["STATUS"])
            res["encode_status"] = status
            res["hung"] = bool(status & 1)
        out["runs"].append(res)
    with open(job["out"], "w") as f:
        json.dump(out, f)
    hung = [i for i, r in enumerate(out["runs"]) if r["hung"]]
    assert not hung, f"engine runs {hung} still busy after their cycle budget"
