"""cocotb testbench for the PE's emitted Verilog.

Reads a job (JSON, path in ``DS_JOB``) of *segments*; each segment is a list of weight
chunks, a list of activation chunks and the number of results it produces. Drives both
chunk streams with independent random valid gaps and the result stream with random
backpressure, counts cycles from the segment's first offered chunk to its last accepted
result, reads the counters and ``error``, then pulses ``clear``. If the job carries the
golden results, every result is compared and the first mismatch printed with both sides.
The results are written to the job's ``out`` path before anything is asserted.
"""

from __future__ import annotations

import json
import os

import cocotb
import numpy as np
from cocotb.triggers import FallingEdge, ReadOnly

from doublesparse.rtl.chunk import pack_chunk
from doublesparse.rtl.pe import result_layout
from doublesparse.tb.cocotb_util import start_and_reset

COUNTERS = ("busy_cycles", "macs", "idle_slots", "empty_pairs")


def _result(word: int, acc_width: int) -> list[int]:
    """[value, err] of a result payload (``result_layout``)."""
    lay = result_layout(acc_width)
    v = word >> lay["value"].offset & ((1 << acc_width) - 1)
    v = v - (1 << acc_width) if v >> (acc_width - 1) else v
    return [v, word >> lay["err"].offset & 1]


@cocotb.test()
async def pe_job(dut):
    with open(os.environ["DS_JOB"]) as f:
        job = json.load(f)
    cfg = job["cfg"]
    J, AW = cfg["join_width"], cfg["acc_width"]
    seed = job["seed"]
    dut._log.info(f"PE job: {len(job['segments'])} segments, seed {seed}, "
                  f"p_w={job['p_w']} p_a={job['p_a']} p_ready={job['p_ready']}")
    rng = np.random.default_rng(seed)
    await start_and_reset(dut, list((dut.w__valid, dut.a__valid, dut.o__ready, dut.clear)))

    out = {"segments": []}
    failure = None
    for si, seg in enumerate(job["segments"]):
        w = [pack_chunk(m, v, J, last=last) for m, v, last in seg["w"]]
        a = [pack_chunk(m, v, J, last=last) for m, v, last in seg["a"]]
        want = seg["n_results"]
        budget = int((200 + 8 * (len(w) + len(a)) * J)
                     / min(job["p_w"], job["p_a"], job["p_ready"]))
        iw = ia = 0
        hold_w = hold_a = False
        results: list[list[int]] = []
        t = 0
        last_t = 0
        hung = False
        while len(results) < want:
            if t >= budget:
                hung = True
                break
            # inputs change just after the falling edge, handshakes are sampled settled
            if not hold_w and iw < len(w) and rng.random() < job["p_w"]:
                hold_w = True
                dut.w__payload.value = w[iw]
            if not hold_a and ia < len(a) and rng.random() < job["p_a"]:
                hold_a = True
                dut.a__payload.value = a[ia]
            dut.w__valid.value = int(hold_w)
            dut.a__valid.value = int(hold_a)
            ready = int(rng.random() < job["p_ready"])
            dut.o__ready.value = ready
            await ReadOnly()
            fw = hold_w and int(dut.w__ready.value)
            fa = hold_a and int(dut.a__ready.value)
            if int(dut.o__valid.value) and ready:
                results.append(_result(int(dut.o__payload.value), AW))
                last_t = t
            await FallingEdge(dut.clk)
            t += 1
            if fw:
                iw += 1
                hold_w = False
            if fa:
                ia += 1
                hold_a = False
        dut.w__valid.value = 0
        dut.a__valid.value = 0
        dut.o__ready.value = 0
        for _ in range(2):
            await FallingEdge(dut.clk)
        await ReadOnly()
        counters = {n: int(getattr(dut, n).value) for n in COUNTERS}
        error = int(dut.error.value)
        await FallingEdge(dut.clk)
        dut.clear.value = 1
        await FallingEdge(dut.clk)
        dut.clear.value = 0
        out["segments"].append({"results": results, "cycles": last_t + 1, "hung": hung,
                                "counters": counters, "error": error,
                                "in_w": iw, "in_a": ia})
        gold = seg.get("expected")
        if failure is None and hung:
            failure = f"segment {si}: no progress after {budget} cycles " \
                      f"({len(results)}/{want} results, {iw}/{len(w)} w, {ia}/{len(a)} a)"
        if failure is None and gold is not None and results != gold:
            k = next((i for i, (r, g) in enumerate(zip(results, gold, strict=False))
                      if r != g), min(len(results), len(gold)))
            failure = (f"segment {si}, result {k}: rtl "
                       f"{results[k] if k < len(results) else None} golden "
                       f"{gold[k] if k < len(gold) else None}")
    with open(job["out"], "w") as f:
        json.dump(out, f)
    if failure:
        dut._log.error(failure)
    assert failure is None, failure
