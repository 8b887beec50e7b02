"""cocotb testbench for the decoder's emitted Verilog (Verilator and Icarus alike).

Reads a job (JSON, path in ``DS_JOB``, written by :func:`doublesparse.tb.runner.run_cocotb`):
``words`` and ``lasts`` (the stream), ``p_valid`` / ``p_ready`` (chances that the source
offers a word / the sink takes a chunk in a cycle), ``seed``, ``check``, optional
``timeout_cycles``, ``cfg`` and ``out``.

Timing: inputs change just after the falling edge; handshakes are sampled in the ReadOnly
phase of the same time step, i.e. settled, half a cycle before the rising edge that acts on
them. Nothing else changes in between, so both simulators see the same thing, and the random
draws follow exactly the order of :func:`doublesparse.tb.amaranth_harness.run_decoder`: the
cycle counts agree with Amaranth's simulator for the same seed.

Stream rules kept: once ``i.valid`` is up, the word holds until accepted. Collected: every
accepted chunk (unused value lanes must be zero, no X on a valid output), the ``error``
code at every ``done`` pulse (``busy`` must be low then) and each image's stop word: the
index in the image of the word after whose acceptance ``error`` turned nonzero (-1 for an
image without error), the RTL's counterpart of ``ImageResult.error_word``. The run stops
when every image has finished or the cycle budget runs out (a hang: the test fails). With
``check`` chunks, codes and stop words are compared with
:func:`doublesparse.sim.formats.parse_stream`; the first difference is printed with both
sides and the image it belongs to. The results JSON (chunks as ``[mask, values, last,
end]``, errors, stops, cycles, in_words, hung, failure, message) is always written before
anything is asserted.
"""

from __future__ import annotations

import json
import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from doublesparse.rtl.chunk import unpack_chunk
from doublesparse.sim.config import Config
from doublesparse.sim.formats import Err, parse_stream


class _Fail(Exception):
    def __init__(self, kind: str, msg: str):
        super().__init__(msg)
        self.kind = kind


def _int(sig, what: str, t: int) -> int:
    v = sig.value
    if not v.is_resolvable:
        raise _Fail("x", f"cycle {t}: {what} is not 0/1: {v}")
    return int(v)


def _chunk(p: int, J: int) -> tuple[list, str | None]:
    """``[mask, values, last, end]`` of an ``o.payload`` integer, and what is wrong with it
    (nonzero unused lanes) or None."""
    mask, lanes, last, end = unpack_chunk(p, J)
    k = bin(mask).count("1")
    bad = None if not any(lanes[k:]) else f"nonzero unused lanes {lanes} for mask {mask:#x}"
    return [mask, lanes[:k], int(last), int(end)], bad


def default_budget(n_words: int, n_images: int, p_valid: float, p_ready: float) -> int:
    """Cycle budget: generous (the decoder needs about max(words, chunks) cycles)."""
    return int((50 + 4 * n_words + 40 * n_images) * 4 / min(p_valid, p_ready))


def compare(chunks: list[list], errors: list[int], words: list[int], lasts: list[bool],
            cfg: Config, stops: list[int] | None = None) -> str | None:
    """First difference from the reference decoder, with both sides; None if equal.
    ``stops`` (optional): the stop word of each image (-1: no error), compared with the
    reference's ``error_word``."""
    ref = parse_stream(words, lasts, cfg)
    lines = []
    # image starts in the stream, for the report
    starts = [0] + [i + 1 for i, lst in enumerate(lasts) if lst][:-1]
    pos = 0
    for k, r in enumerate(ref):
        n = len(r.chunks)
        got = chunks[pos:pos + n]
        want = [[c.mask, list(c.values), int(c.last), int(c.end)] for c in r.chunks]
        code = errors[k] if k < len(errors) else None
        stop = stops[k] if stops is not None and k < len(stops) else r.error_word
        if code != int(r.error) or got != want or stop != r.error_word:
            lines.append(f"image {k} (stream words {starts[k]}..{starts[k] + r.words - 1}, "
                         f"{n} reference chunks, chunks {pos}..{pos + n - 1} of the stream):")
            lines.append(f"  error code: rtl {code} ({_name(code)}), reference {int(r.error)} "
                         f"({r.error.name}: {r.detail or 'ok'}"
                         f"{f', at word {r.error_word}' if r.error_word >= 0 else ''})")
            if stop != r.error_word:
                lines.append(f"  stop word: rtl {stop}, reference {r.error_word}")
            for j in range(max(len(got), len(want))):
                a = got[j] if j < len(got) else None
                b = want[j] if j < len(want) else None
                if a != b:
                    lines.append(f"  first differing chunk {j} of the image:\n"
                                 f"    rtl: {_fmt(a, cfg.join_width)}\n"
                                 f"    ref: {_fmt(b, cfg.join_width)}")
                    break
            img = words[starts[k]:starts[k] + r.words]
            lines.append(f"  image words: {[hex(w) for w in img]}" if len(img) <= 64
                         else f"  ({len(img)} words)")
            return "\n".join(lines)
        pos += n
    if len(errors) != len(ref):
        return f"{len(errors)} images finished, reference {len(ref)}"
    if len(chunks) != pos:
        return f"{len(chunks)} chunks, reference {pos}; extra: {chunks[pos:pos + 3]}"
    return None


def _stops(stops: list[int | None]) -> list[int]:
    return [-1 if s is None else s for s in stops]


def _name(code: int | None) -> str:
    try:
        return Err(code).name
    except ValueError:
        return "?"


def _fmt(c: list | None, J: int) -> str:
    if c is None:
        return "(none)"
    return f"mask={c[0]:0{J}b} values={c[1]} last={c[2]} end={c[3]}"


@cocotb.test()
async def decoder_job(dut):
    with open(os.environ["DS_JOB"]) as f:
        job = json.load(f)
    cfg = Config.from_dict(job["cfg"])
    J = cfg.join_width
    words, lasts = job["words"], [bool(x) for x in job["lasts"]]
    seed, p_valid, p_ready = job["seed"], job["p_valid"], job["p_ready"]
    n_images = sum(lasts)
    budget = job.get("timeout_cycles") or default_budget(len(words), n_images, p_valid,
                                                         p_ready)
    dut._log.info(f"decoder job: {len(words)} words, {n_images} images, seed {seed}, "
                  f"p_valid={p_valid} p_ready={p_ready}, budget {budget} cycles, "
                  f"J={J} R={cfg.run_bits} N:M={cfg.nm_n}:{cfg.nm_m}")
    rng = np.random.default_rng(seed)
    Clock(dut.clk, 10, unit="ns").start()
    dut.i__valid.value = 0
    dut.i__payload.value = 0
    dut.o__ready.value = 0
    dut.rst.value = 1
    for _ in range(3):
        await RisingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst.value = 0

    chunks: list[list] = []
    errors: list[int] = []
    starts = [0] + [k + 1 for k, lst in enumerate(lasts) if lst][:-1]   # image starts
    stops: list[int | None] = [None] * n_images
    i = t = 0
    holding = hung = False
    failure = message = None
    try:
        while len(errors) < n_images:
            if t >= budget:
                hung = True
                raise _Fail("hung", f"decoder hung: {len(errors)} of {n_images} images "
                                    f"finished, {i} of {len(words)} words accepted after "
                                    f"{t} cycles (budget {budget}; seed {seed})")
            # drive (just after the falling edge)
            if not holding and i < len(words) and rng.random() < p_valid:
                holding = True
                dut.i__payload.value = words[i] | int(lasts[i]) << 32
            dut.i__valid.value = int(holding)
            ready = int(rng.random() < p_ready)
            dut.o__ready.value = ready
            # sample (settled, before the rising edge)
            await ReadOnly()
            fire = holding and _int(dut.i__ready, "i.ready", t)
            if _int(dut.o__valid, "o.valid", t) and ready:
                c, bad = _chunk(_int(dut.o__payload, "o.payload", t), J)
                if bad:
                    raise _Fail("lanes", f"cycle {t}, chunk {len(chunks)}: {bad}")
                chunks.append(c)
            # stop word: error turns nonzero the cycle after the bad word is taken; it is
            # the image in progress's once that image's first word has been taken
            k = len(errors)
            if (k < n_images and stops[k] is None and i > starts[k]
                    and _int(dut.error, "error", t)):
                stops[k] = i - 1 - starts[k]
            if _int(dut.done, "done", t):
                if _int(dut.busy, "busy", t):
                    raise _Fail("busy", f"cycle {t}: busy high while done pulses "
                                        f"(image {len(errors)})")
                errors.append(_int(dut.error, "error", t))
            await FallingEdge(dut.clk)
            t += 1
            if fire:
                i += 1
                holding = False
        # the final chunk may still sit in the output register
        dut.i__valid.value = 0
        dut.o__ready.value = 1
        for k in range(4):
            await ReadOnly()
            if not _int(dut.o__valid, "o.valid", t + k):
                break
            c, bad = _chunk(_int(dut.o__payload, "o.payload", t + k), J)
            if bad:
                raise _Fail("lanes", f"after the stream, chunk {len(chunks)}: {bad}")
            chunks.append(c)
            await FallingEdge(dut.clk)
        else:
            raise _Fail("extra", "o.valid still high 4 cycles after every image finished")
        if i != len(words):
            raise _Fail("words", f"every image finished but only {i} of {len(words)} words "
                                 f"were accepted")
        if job["check"]:
            diff = compare(chunks, errors, words, lasts, cfg, _stops(stops))
            if diff:
                raise _Fail("mismatch", f"RTL differs from the reference decoder (seed {seed}):"
                                        f"\n{diff}")
            dut._log.info(f"{n_images} images, {len(chunks)} chunks and every error code "
                          f"match the reference ({t} cycles)")
    except _Fail as e:
        failure, message = e.kind, str(e)
    finally:
        with open(job["out"], "w") as f:
            json.dump({"chunks": chunks, "errors": errors, "stops": _stops(stops),
                       "cycles": t, "in_words": i,
                       "hung": hung, "failure": failure, "message": message}, f)
    if failure:
        dut._log.error(message)
        raise AssertionError(message)
