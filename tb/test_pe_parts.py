"""Each PE component (rtl/pe/) alone in Amaranth's simulator against a small Python
reference of its contract, cycle by cycle, under random input gaps and random output
backpressure: Join (handshake, resync, flags, the pair payload PE_STAGES cycles after the
take), Window (room, the select steps and the pops), Pick (the operands two transfers
later), MAC (ready, products, accumulation, the two result slots) and Counters.

The seed is printed (DS_SEED overrides it); a mismatch names the cycle and prints both
sides."""

from __future__ import annotations

import collections
import os

import numpy as np
import pytest
from amaranth.sim import Simulator

from doublesparse.rtl.pe import OUT_SLOTS, PE_STAGES, PEError
from doublesparse.rtl.pe.counters import Counters
from doublesparse.rtl.pe.join import Join
from doublesparse.rtl.pe.mac import MAC
from doublesparse.rtl.pe.pick import PICK_STAGES, Pick
from doublesparse.rtl.pe.window import QUEUE_DELAY, Window
from doublesparse.sim.config import Config

SEED = int(os.environ.get("DS_SEED", "11"))
CONFIGS = {"M2": Config(), "M1": Config(multipliers=1),
           "M4": Config(multipliers=4, join_width=32),
           "short": Config(acc_width=21, max_reduction=32),   # max_chunks 2: TOO_LONG
           "wrap": Config(acc_width=17, max_reduction=2)}     # the sum wraps


def _seed(name: str, extra: int = 0) -> int:
    seed = SEED + sum(map(ord, name)) + extra
    print(f"seed {seed} (DS_SEED={SEED}; set DS_SEED to change)")
    return seed


def _run(dut, bench) -> None:
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def _expect(t: int, what: str, rtl, ref) -> None:
    assert rtl == ref, f"cycle {t}: {what}: rtl {rtl!r}, reference {ref!r}"


def _wrap(v: int, bits: int) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def _pair_fields(pay, J: int) -> tuple:
    """(cnt, cle, pw, pa, last, err) of a pair payload read from the simulator."""
    return (pay.cnt, pay.cle, [pay.pw[i] for i in range(J)], [pay.pa[i] for i in range(J)],
            pay.last, pay.err)


# ---------------------------------------------------------------------------------- Join

def _join_ref_pair(w, a, J: int, M: int, last: int, err: int) -> tuple:
    """The pair payload of chunks w, a: (mask, packed values, last)."""
    def dense(mask, vals):
        out, n = [], 0
        for i in range(J):
            out.append(vals[n] if mask >> i & 1 else 0)
            n += mask >> i & 1
        return out
    wd, ad = dense(w[0], w[1]), dense(a[0], a[1])
    match = [i for i in range(J) if (w[0] & a[0]) >> i & 1]
    cnt = len(match)
    pw = [wd[i] for i in match] + [0] * (J - cnt)
    pa = [ad[i] for i in match] + [0] * (J - cnt)
    cle = sum(1 << v for v in range(M + 1) if cnt <= v)
    return (cnt, cle, pw, pa, last, err)


def _chunk_streams(rng, cfg: Config, n_acc: int):
    """Weight and activation chunk lists (mask, values, last): accumulations of 1..4
    chunks, about one in eight with 'last' on different chunks; values past the mask's
    popcount are random (the join must ignore them)."""
    J = cfg.join_width
    out = ([], [])
    for _ in range(n_acc):
        n = int(rng.integers(1, 5))
        lens = (n, n) if rng.random() > 0.125 else (n, int(rng.integers(1, 5)))
        for s, ln in zip(out, lens, strict=True):
            for i in range(ln):
                dens = rng.choice([0.0, 0.1, 0.5, 0.9, 1.0])
                mask = int(sum(1 << b for b in range(J) if rng.random() < dens))
                vals = [int(v) for v in rng.integers(-128, 128, J)]
                s.append((mask, vals, int(i == ln - 1)))
    return out


@pytest.mark.parametrize("name", ["M2", "M1", "M4", "short"])
@pytest.mark.parametrize("p_in,p_room", [(0.9, 0.9), (0.5, 0.7), (1.0, 0.3)])
def test_join(name, p_in, p_room) -> None:
    cfg = CONFIGS[name]
    J, M = cfg.join_width, cfg.multipliers
    rng = np.random.default_rng(_seed("join" + name, int(10 * p_in + 100 * p_room)))
    dut = Join(cfg)
    ws, as_ = _chunk_streams(rng, cfg, 60)
    cycles = 1500
    moved = []

    async def bench(ctx):
        iw = ia = 0
        hold_w = hold_a = False
        drop_w = drop_a = False
        nchunks, too_long = 0, False
        due = {}                                       # cycle -> expected pair payload
        taken_at = collections.deque()
        faults = 0
        for t in range(cycles):
            if not hold_w and iw < len(ws) and rng.random() < p_in:
                hold_w = True
            if not hold_a and ia < len(as_) and rng.random() < p_in:
                hold_a = True
            room = int(rng.random() < p_room)
            w = ws[iw] if iw < len(ws) else (0, [0] * J, 0)
            a = as_[ia] if ia < len(as_) else (0, [0] * J, 0)
            for port, c, hold in ((dut.w, w, hold_w), (dut.a, a, hold_a)):
                ctx.set(port.payload, {"mask": c[0], "values": c[1], "last": c[2], "end": 0})
                ctx.set(port.valid, int(hold))
            ctx.set(dut.room, room)
            # reference: handshake, resync and flags
            take, fault = 0, PEError.OK
            if drop_w:
                rw, ra = 1, 0
                drop_w = not (hold_w and w[2])
            elif drop_a:
                rw, ra = 0, 1
                drop_a = not (hold_a and a[2])
            else:
                take = int(hold_w and hold_a and room)
                rw = ra = take
                if take:
                    long_now = too_long or nchunks >= cfg.max_chunks
                    mismatch = w[2] != a[2]
                    nchunks, too_long = ((0, False) if w[2] or a[2]
                                         else (nchunks + 1, long_now))
                    if mismatch:
                        drop_w, drop_a = bool(a[2]), bool(w[2])
                        fault = PEError.LAST_MISMATCH
                    elif long_now:
                        fault = PEError.TOO_LONG
                    due[t + PE_STAGES] = _join_ref_pair(w, a, J, M, w[2] | a[2],
                                                        int(mismatch or long_now))
                    taken_at.append(t)
            while taken_at and taken_at[0] < t - PE_STAGES:
                taken_at.popleft()
            busy = int(any(t - PE_STAGES <= x < t for x in taken_at))
            got = [ctx.get(x) for x in (dut.w.ready, dut.a.ready, dut.taken, dut.fault,
                                        dut.busy)]
            _expect(t, "(w.ready, a.ready, taken, fault, busy)", got,
                    [rw, ra, take, fault, busy])
            exp = due.pop(t, None)
            _expect(t, "pair.valid", ctx.get(dut.pair.valid), int(exp is not None))
            if exp is not None:
                _expect(t, "pair (cnt, cle, pw, pa, last, err)",
                        _pair_fields(ctx.get(dut.pair.payload), J), exp)
            faults += fault != PEError.OK
            await ctx.tick()
            if hold_w and rw:
                iw, hold_w = iw + 1, False
            if hold_a and ra:
                ia, hold_a = ia + 1, False
        moved.append((iw, ia, faults))

    _run(dut, bench)
    # the streams moved and the resync and flag paths were exercised
    assert moved and min(moved[0][:2]) > 40 and moved[0][2] > 0, moved


# -------------------------------------------------------------------------------- Window

def _random_pair(rng, J: int, M: int) -> dict:
    cnt = int(rng.choice([0, 0, 1, 1, 2, 3, int(rng.integers(0, J + 1)), J]))
    pw = [int(v) for v in rng.integers(-128, 128, cnt)] + [0] * (J - cnt)
    pa = [int(v) for v in rng.integers(-128, 128, cnt)] + [0] * (J - cnt)
    return {"cnt": cnt, "cle": sum(1 << v for v in range(M + 1) if cnt <= v),
            "pw": pw, "pa": pa, "last": int(rng.random() < 0.3),
            "err": int(rng.random() < 0.1)}


def _window_ref_step(q: list, u0: int, M: int) -> dict:
    """What the window does with queue q (q[0] = pair 0, u0 of its matches used)."""
    if not q:
        return {"ops": [], "close": 0, "err": 0, "empty": 0, "pops": 0, "held": 0}
    p0 = q[0]
    r0 = p0["cnt"] - u0
    use1 = len(q) >= 2 and not p0["last"]
    ops = [(p0["pw"][u0 + k], p0["pa"][u0 + k]) for k in range(r0)]
    if use1:
        ops += [(q[1]["pw"][k], q[1]["pa"][k]) for k in range(q[1]["cnt"])]
    c0 = r0 <= M
    c1 = use1 and c0 and r0 + q[1]["cnt"] <= M
    return {"ops": ops[:M], "r0": r0, "use1": use1,
            "close": int((c0 and p0["last"]) or (c1 and q[1]["last"])),
            "err": int((c0 and p0["err"]) or (c1 and q[1]["err"])),
            "empty": int(c0 and p0["cnt"] == 0) + int(c1 and q[1]["cnt"] == 0),
            "pops": 2 if c1 else int(c0), "held": 1}


def _window_dut_ops(s, M: int) -> list:
    """The operands a step payload selects, by the contract of step_layout."""
    r0_le = s.r0_le
    r0 = next((v for v in range(M + 1) if r0_le >> v & 1), None)   # None: r0 > M
    ops = []
    for k in range(M):
        if not s.sel >> k & 1:
            continue
        if not r0_le >> k & 1:
            ops.append((s.p0.pw[s.start[k]], s.p0.pa[s.start[k]]))
        else:
            ops.append((s.p1.pw[k - r0], s.p1.pa[k - r0]))
    return ops


@pytest.mark.parametrize("name", ["M2", "M1", "M4"])
@pytest.mark.parametrize("depth", [2, 8])
@pytest.mark.parametrize("p_in,p_adv", [(0.9, 0.9), (1.0, 0.4), (0.4, 1.0)])
def test_window(name, depth, p_in, p_adv) -> None:
    cfg = CONFIGS[name]
    J, M = cfg.join_width, cfg.multipliers
    rng = np.random.default_rng(_seed("window" + name, depth + int(10 * p_in + 100 * p_adv)))
    dut = Window(cfg, depth=depth, stages=PE_STAGES, checks=True)
    QC = depth + PE_STAGES
    cycles = 1500
    moved = []

    async def bench(ctx):
        q: list = []                       # the queue as the reference sees it
        u0 = 0
        occ = 0
        due = {}                           # cycle -> pair delivered on `pair`
        products = pops_total = 0
        for t in range(cycles):
            room = ctx.get(dut.room)
            _expect(t, "room", room, int(occ < QC))
            take = int(room and rng.random() < p_in)
            if take:
                due[t + PE_STAGES] = _random_pair(rng, J, M)
            pair = due.pop(t, None)
            adv = int(rng.random() < p_adv)
            ctx.set(dut.taken, take)
            ctx.set(dut.pair.valid, int(pair is not None))
            if pair is not None:
                ctx.set(dut.pair.payload, pair)
            ctx.set(dut.step.ready, adv)
            ref = _window_ref_step(q, u0, M)
            s = ctx.get(dut.step.payload)
            got = {"ops": _window_dut_ops(s, M), "close": s.close, "err": s.err}
            _expect(t, "step (ops, close, err)", got,
                    {k: ref[k] for k in ("ops", "close", "err")})
            st = ctx.get(dut.stats.payload)
            _expect(t, "stats (valid, products, empty, held), busy",
                    (ctx.get(dut.stats.valid), st.products, st.empty, st.held,
                     ctx.get(dut.busy)),
                    (adv, len(ref["ops"]), ref["empty"], ref["held"], ref["held"]))
            await ctx.tick()
            pops = ref["pops"] if adv else 0
            if adv and q:
                if pops == 2 or (pops == 1 and not ref["use1"]):
                    u0 = 0
                elif pops == 1:
                    u0 = M - ref["r0"]
                else:
                    u0 += M
                products += len(ref["ops"])
            q = q[pops:] + ([pair] if pair is not None else [])
            occ += take - pops
            pops_total += pops
        moved.append((products, pops_total))

    _run(dut, bench)
    # pairs and products moved (a stuck window must fail)
    assert moved and moved[0][0] > cycles * p_adv / 4 and moved[0][1] > cycles / 20, moved


# ---------------------------------------------------------------------------------- Pick

def _random_step(rng, J: int, M: int, width: int) -> tuple[dict, dict]:
    """A step payload consistent with the window's invariants (u0 + r0 <= J) and the
    operands it selects by the contract."""
    u0 = int(rng.integers(0, J + 1))
    r0 = int(rng.integers(0, J - u0 + 1))
    p = {n: [int(v) for v in rng.integers(-128, 128, J)] for n in ("w0", "a0", "w1", "a1")}
    sel = int(rng.integers(0, M + 1))
    step = {"p0": {"pw": p["w0"], "pa": p["a0"]}, "p1": {"pw": p["w1"], "pa": p["a1"]},
            "start": [(u0 + k) % (1 << width) for k in range(M)],
            "r0_le": sum(1 << v for v in range(M + 1) if r0 <= v),
            "sel": (1 << sel) - 1, "close": int(rng.random() < 0.2),
            "err": int(rng.random() < 0.1)}
    ops = [(p["w0"][u0 + k], p["a0"][u0 + k]) if k < r0 else
           (p["w1"][k - r0], p["a1"][k - r0]) for k in range(sel)]
    return step, {"ops": ops, "mask": step["sel"], "close": step["close"],
                  "err": step["err"]}


@pytest.mark.parametrize("name", ["M2", "M1", "M4"])
@pytest.mark.parametrize("p_ready", [1.0, 0.5])
def test_pick(name, p_ready) -> None:
    cfg = CONFIGS[name]
    J, M = cfg.join_width, cfg.multipliers
    rng = np.random.default_rng(_seed("pick" + name, int(10 * p_ready)))
    dut = Pick(cfg)
    width = (J).bit_length()
    cycles = 800
    empty = {"ops": [], "mask": 0, "close": 0, "err": 0}

    async def bench(ctx):
        taken = collections.deque([empty] * PICK_STAGES)   # the last PICK_STAGES taken
        for t in range(cycles):
            step, want = _random_step(rng, J, M, width)
            ready = int(rng.random() < p_ready)
            ctx.set(dut.step.payload, step)
            ctx.set(dut.ops.ready, ready)
            _expect(t, "step.ready", ctx.get(dut.step.ready), ready)
            o = ctx.get(dut.ops.payload)
            exp = taken[0]
            got = {"ops": [(o.w[k], o.a[k]) for k in range(M) if o.mask >> k & 1],
                   "mask": o.mask, "close": o.close, "err": o.err}
            _expect(t, "ops", got, exp)
            busy = int(any(x["mask"] or x["close"] for x in taken))
            _expect(t, "busy", ctx.get(dut.busy), busy)
            await ctx.tick()
            if ready:
                taken.popleft()
                taken.append(want)

    _run(dut, bench)


# ----------------------------------------------------------------------------------- MAC

@pytest.mark.parametrize("name", ["M2", "M4", "wrap"])
@pytest.mark.parametrize("p_ready", [1.0, 0.6, 0.15])
def test_mac(name, p_ready) -> None:
    cfg = CONFIGS[name]
    M, AW = cfg.multipliers, cfg.acc_width
    rng = np.random.default_rng(_seed("mac" + name, int(100 * p_ready)))
    dut = MAC(cfg, checks=True)
    cycles = 1500
    log = []

    async def bench(ctx):
        s2 = {"p": [0] * M, "close": 0, "err": 0, "any": 0}
        acc, acc_err = 0, 0
        slots: collections.deque = collections.deque()
        results = stalls = 0
        for t in range(cycles):
            w = [int(v) for v in rng.choice([-128, 127, -1, 0, 1, 5], M)]
            w = w if rng.random() < 0.5 else [int(v) for v in rng.integers(-128, 128, M)]
            a = [int(v) for v in rng.integers(-128, 128, M)]
            op = {"w": w, "a": a, "mask": int(rng.integers(0, 1 << M)),
                  "close": int(rng.random() < 0.25), "err": int(rng.random() < 0.05)}
            o_ready = int(rng.random() < p_ready)
            ctx.set(dut.ops.payload, op)
            ctx.set(dut.o.ready, o_ready)
            adv = int(not (s2["close"] and len(slots) == OUT_SLOTS))
            valid = int(bool(slots))
            _expect(t, "(ops.ready, o.valid)", (ctx.get(dut.ops.ready), ctx.get(dut.o.valid)),
                    (adv, valid))
            if valid:
                p = ctx.get(dut.o.payload)
                _expect(t, "o.payload (value, err)", (p.value, p.err), slots[0])
            _expect(t, "busy", ctx.get(dut.busy), int(s2["any"] or s2["close"] or valid))
            await ctx.tick()
            if valid and o_ready:
                slots.popleft()
                results += 1
            stalls += not adv
            if adv:
                total = _wrap(acc + sum(s2["p"]), AW)
                if s2["close"]:
                    slots.append((total, int(acc_err or s2["err"])))
                    assert len(slots) <= OUT_SLOTS
                    acc, acc_err = 0, 0
                else:
                    acc, acc_err = total, int(acc_err or s2["err"])
                s2 = {"p": [w[k] * a[k] if op["mask"] >> k & 1 else 0 for k in range(M)],
                      "close": op["close"], "err": op["err"],
                      "any": int(op["mask"] != 0 or op["close"])}
        log.append((results, stalls))

    _run(dut, bench)
    assert log and log[0][0] > cycles * min(p_ready, 0.25) / 4, log
    if p_ready < 0.2:
        assert log[0][1] > 0, log          # the stall path was exercised


# ------------------------------------------------------------------------------ Counters

@pytest.mark.parametrize("name", ["M2", "M4"])
def test_counters(name) -> None:
    cfg = CONFIGS[name]
    M = cfg.multipliers
    rng = np.random.default_rng(_seed("counters" + name))
    dut = Counters(cfg)
    names = ("busy_cycles", "macs", "idle_slots", "empty_pairs")

    async def bench(ctx):
        inc = dict.fromkeys(names, 0)
        cnt = dict.fromkeys(names, 0)
        error = 0
        for t in range(1500):
            busy = int(rng.random() < 0.7)
            valid = int(rng.random() < 0.8)
            products = int(rng.integers(0, M + 1))
            empty = int(rng.choice([0, 0, 0, 1, 2]))
            held = int(rng.random() < 0.8)
            fault = int(rng.choice([0] * 40 + [1, 2]))
            clear = int(rng.random() < 0.01)
            for sig, v in ((dut.busy, busy), (dut.stats.valid, valid), (dut.fault, fault),
                           (dut.clear, clear)):
                ctx.set(sig, v)
            ctx.set(dut.stats.payload, {"products": products, "empty": empty, "held": held})
            got = {n: ctx.get(getattr(dut, n)) for n in names} | {"error": ctx.get(dut.error)}
            _expect(t, "counters, error", got, cnt | {"error": error})
            await ctx.tick()
            step = valid and not clear
            if clear:
                cnt, error = dict.fromkeys(names, 0), 0
            else:
                cnt = {n: (cnt[n] + inc[n]) & 0xFFFFFFFF for n in names}
                error = fault or error
            inc = {"busy_cycles": int(busy and not clear),
                   "macs": products if step else 0,
                   "idle_slots": M - products if step and held else 0,
                   "empty_pairs": empty if step else 0}

    _run(dut, bench)


def test_latencies_add_up() -> None:
    """PE_LATENCY is the join's stages, the queue, the pick and the MAC."""
    from doublesparse.rtl.pe import PE_LATENCY, SELECT_TO_OUT
    from doublesparse.rtl.pe.mac import MAC_STAGES
    assert SELECT_TO_OUT == PICK_STAGES + MAC_STAGES
    assert PE_LATENCY == PE_STAGES + QUEUE_DELAY + SELECT_TO_OUT
