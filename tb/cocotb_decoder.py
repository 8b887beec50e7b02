"""cocotb testbench for the decoder's emitted Verilog.

Reads a job (JSON, path in ``DS_JOB``): a word stream with ``last`` flags, the chances
``p_valid`` / ``p_ready`` that the source offers a word and the sink takes a chunk in a
cycle, a seed, and ``check``. Drives the stream cycle by cycle (inputs change after the
falling edge, handshakes are sampled settled before the rising edge), collects every chunk
and the error code at every ``done`` pulse, and stops when every image has finished or after
a cycle budget (a hang). With ``check`` it compares chunks and error codes with the
reference decoder (:func:`doublesparse.sim.formats.parse_stream`) and prints the first
difference with both sides. Results are written to the job's ``out`` path first.
"""

from __future__ import annotations

import json
import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from doublesparse.sim.config import Config
from doublesparse.sim.formats import parse_stream


def _chunk(p: int, J: int) -> tuple[list, str | None]:
    mask = p & ((1 << J) - 1)
    lanes = [(p >> (J + 8 * i)) & 0xFF for i in range(J)]
    lanes = [v - 256 if v >= 128 else v for v in lanes]
    k = bin(mask).count("1")
    bad = None if not any(lanes[k:]) else f"nonzero unused lanes {lanes} for mask {mask:#x}"
    return [mask, lanes[:k], (p >> (9 * J)) & 1, (p >> (9 * J + 1)) & 1], bad


@cocotb.test()
async def decoder_job(dut):
    with open(os.environ["DS_JOB"]) as f:
        job = json.load(f)
    cfg = Config.from_dict(job["cfg"])
    J = cfg.join_width
    words, lasts = job["words"], job["lasts"]
    seed = job["seed"]
    n_images = sum(lasts)
    dut._log.info(f"decoder job: {len(words)} words, {n_images} images, seed {seed}, "
                  f"p_valid={job['p_valid']} p_ready={job['p_ready']}")
    rng = np.random.default_rng(seed)
    Clock(dut.clk, 10, unit="ns").start()
    dut.i__valid.value = 0
    dut.o__ready.value = 0
    dut.rst.value = 1
    for _ in range(3):
        await RisingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst.value = 0

    budget = int((50 + 4 * len(words) + 40 * n_images) * 4
                 / min(job["p_valid"], job["p_ready"]))
    chunks: list[list] = []
    errors: list[int] = []
    bad_lanes = None
    i = 0
    holding = False
    t = 0
    hung = False
    while len(errors) < n_images:
        if t >= budget:
            hung = True
            break
        if not holding and i < len(words) and rng.random() < job["p_valid"]:
            holding = True
            dut.i__payload.value = words[i] | int(lasts[i]) << 32
        dut.i__valid.value = int(holding)
        ready = int(rng.random() < job["p_ready"])
        dut.o__ready.value = ready
        await ReadOnly()
        fire = holding and int(dut.i__ready.value)
        if int(dut.o__valid.value) and ready:
            if not dut.o__payload.value.is_resolvable:
                raise AssertionError(f"unresolved output payload {dut.o__payload.value} "
                                     f"at cycle {t}")
            c, bad = _chunk(int(dut.o__payload.value), J)
            chunks.append(c)
            bad_lanes = bad_lanes or bad
        if int(dut.done.value):
            errors.append(int(dut.error.value))
        await FallingEdge(dut.clk)
        t += 1
        if fire:
            i += 1
            holding = False
    # the final chunk may still sit in the output register
    dut.i__valid.value = 0
    dut.o__ready.value = 1
    for _ in range(3):
        await ReadOnly()
        if int(dut.o__valid.value):
            c, bad = _chunk(int(dut.o__payload.value), J)
            chunks.append(c)
            bad_lanes = bad_lanes or bad
        await FallingEdge(dut.clk)
    with open(job["out"], "w") as f:
        json.dump({"chunks": chunks, "errors": errors, "cycles": t, "in_words": i,
                   "hung": hung}, f)

    assert not hung, f"decoder hung: {len(errors)}/{n_images} images done after {t} cycles"
    assert bad_lanes is None, bad_lanes
    if job["check"]:
        ref = parse_stream(words, lasts, cfg)
        ref_err = [int(r.error) for r in ref]
        if errors != ref_err:
            k = next(j for j, (a, b) in enumerate(zip(errors + [None] * len(ref_err),
                                                      ref_err, strict=False)) if a != b)
            msg = (f"image {k}: rtl error {errors[k] if k < len(errors) else None}, "
                   f"reference {ref_err[k]} ({ref[k].detail})")
            dut._log.error(msg)
            raise AssertionError(msg)
        ref_chunks = [[c.mask, list(c.values), int(c.last), int(c.end)]
                      for r in ref for c in r.chunks]
        if chunks != ref_chunks:
            k = next((j for j, (a, b) in enumerate(zip(chunks, ref_chunks, strict=False))
                      if a != b), min(len(chunks), len(ref_chunks)))
            msg = (f"chunk {k} of {len(ref_chunks)}: rtl "
                   f"{chunks[k] if k < len(chunks) else None} reference "
                   f"{ref_chunks[k] if k < len(ref_chunks) else None}")
            dut._log.error(msg)
            raise AssertionError(msg)
        dut._log.info(f"{n_images} images, {len(chunks)} chunks match the reference "
                      f"({t} cycles)")
