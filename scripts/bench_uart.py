"""The system top behind its UART under Verilator (``tb/cocotb_system.py``): corrupted
requests through the simulated pins, each refused with the code it must get, nothing
written, the next jobs correct.

``python -m doublesparse.scripts.bench_uart [--frames N] [--seed S] [--sim SIM] [--json OUT]``

One simulation: a layer (requantized, weights and activations as images) is loaded and
run; the descriptor registers and STATUS are read; ``N`` corrupted requests are sent one at
a time (after each refused reply the host pauses as the protocol asks); the descriptor
and STATUS are read again; the loaded layer is started again without reloading (a
corrupted LOAD or WRITE that had written an entry, a weight value, KMAP, MULT or SHIFT
would change its outputs: every corrupted LOAD aims at entry 0 with other data) and a new
layer is loaded and run. Both layers are compared with the golden model.

The expected code of each request comes from references independent of the RTL: the frame
rules (``sim/frame_ref.py:reference``) and the reference decoder
(``sim/formats.py:parse_image``, the detail of BAD_IMAGE). Kinds:

* ``flip``: 1 to 3 bit flips after the sync byte of a LOAD or WRITE (BAD_CRC, or TIMEOUT
  when a flip lengthens the frame);
* ``truncate``: a LOAD or WRITE cut short (TIMEOUT);
* ``image``: 1 or 2 bit flips in a LOAD's image under a correct frame CRC (BAD_IMAGE and
  the decoder's code);
* ``bad_target``: an unknown target, a PE past the last, descriptor bits 31..16 set
  (BAD_TARGET);
* ``too_big``: an image that runs past its memory (TOO_BIG);
* ``bad_cmd``, ``bad_length``: an unknown command or H0 bits 15..8 set, a count that breaks
  its command's rule, under a correct CRC;
* ``embedded``: a WRITE whose count is cut so that a whole valid WRITE of the descriptor
  follows the point where the receiver refuses it (BAD_CRC; the WRITE inside is dropped);
* ``sync_after``: a WRITE with a bad CRC followed at once by a sync byte and the start of
  (or a whole) valid WRITE (BAD_CRC; nothing after it is taken).

Printed: the count of each kind and of each reply code, refused, wrongly accepted (must be
0), wrong codes, missing replies, stray bytes after a refusal, the checks of the layers,
the simulated cycles and the wall time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from ..rtl.engine.regmap import REG, REGION, REGION_SHIFT
from ..rtl.system.protocol import LOAD_WORDS, SYNC_REQUEST, Cmd, Reply, Target, request_frame
from ..rtl.system.system import FRAME_WORDS
from ..sim.config import Config
from ..sim.conv import conv2d_golden, requantize
from ..sim.formats import crc32_words, encode, parse_image, prune_nm
from ..sim.frame_ref import reference

__all__ = ["fuzz_frames", "run_fuzz", "KINDS", "DESC_WORDS"]

#: kinds of corruption and their shares
KINDS = {"flip": 4, "truncate": 1, "image": 3, "bad_target": 1, "too_big": 1, "bad_cmd": 1,
         "bad_length": 1, "embedded": 1, "sync_after": 1}
#: the descriptor registers read back (C .. WO)
DESC_WORDS = 13


def _raw(h0: int, arg: int, payload: list[int]) -> bytes:
    words = [h0, arg, *payload]
    return bytes([SYNC_REQUEST]) + b"".join(
        w.to_bytes(4, "little") for w in [*words, crc32_words(words)])


def _flip_bits(data: bytes, rng, lo: int, n: int) -> bytes:
    b = bytearray(data)
    for _ in range(n):
        b[int(rng.integers(lo, len(b)))] ^= 1 << int(rng.integers(0, 8))
    return bytes(b)


def _image(rng, cfg: Config, target: int) -> tuple[list[int], str]:
    """A small random image (bitmap, rle or nm) of 2 to 4 positions for ``target``, with
    at least two nonzeros (channel 0 of the first two positions)."""
    fmt = str(rng.choice(["bitmap", "rle", "nm"]))
    C = int(rng.choice([16, 32, 64]))
    x = np.where(rng.random((C, 1, int(rng.integers(2, 5)))) < 0.5,
                 rng.integers(-128, 128, (C, 1, 1)), 0)
    if fmt == "nm":
        x = prune_nm(x, cfg.nm_n, cfg.nm_m)
    x[0:cfg.nm_m, 0, 0:2] = 0
    x[0, 0, 0:2] = 77 if target else -77
    return [int(v) for v in encode(x, fmt, cfg)], fmt


def _good(rng, cfg: Config) -> tuple[bytes, str]:
    """A valid LOAD (entry 0 of ACT or of a PE's WGT) or WRITE (descriptor, KMAP, MULT,
    SHIFT) request."""
    if rng.random() < 0.6:
        target = int(rng.integers(0, 2))
        pe = int(rng.integers(0, cfg.pes)) if target else 0
        image, _ = _image(rng, cfg, target)
        return request_frame(Cmd.LOAD, 0, [target | pe << 8, 0, 0] + image), "LOAD"
    region = str(rng.choice(["CSR", "KMAP", "MULT", "SHIFT"]))
    addr = REG["C"] if region == "CSR" else REGION[region] << REGION_SHIFT
    words = [int(v) for v in rng.integers(1, 1 << 16, int(rng.integers(1, 14)))]
    return request_frame(Cmd.WRITE, addr, words), "WRITE"


def fuzz_frames(rng: np.random.Generator, cfg: Config, n: int,
                buffer_words: int = FRAME_WORDS) -> list[dict]:
    """``n`` corrupted requests: dicts with ``kind``, ``frame`` (hex), ``code`` (the reply
    code it must get) and ``detail`` (the detail it must carry, or None)."""
    kinds = [k for k, share in KINDS.items() for _ in range(share)]
    poison = request_frame(Cmd.WRITE, REG["C"], [999, 999, 999])
    out: list[dict] = []
    while len(out) < n:
        kind = kinds[len(out) % len(kinds)]
        detail: int | None = 0
        if kind in ("flip", "truncate"):
            good, _ = _good(rng, cfg)
            frame = (_flip_bits(good, rng, 1, int(rng.integers(1, 4))) if kind == "flip"
                     else good[:int(rng.integers(1, len(good)))])
            code = reference(frame, buffer_words).code
            if code == Reply.OK:            # the flips cancelled out
                continue
        elif kind == "image":
            target = int(rng.integers(0, 2))
            image, _ = _image(rng, cfg, target)
            bad = [int(w) for w in np.frombuffer(_flip_bits(
                np.asarray(image, dtype="<u4").tobytes(), rng, 0, int(rng.integers(1, 3))),
                dtype="<u4")]
            err = parse_image(bad, cfg).error
            if err == 0:
                continue
            frame = request_frame(Cmd.LOAD, 0, [target, 0, 0] + bad)
            code, detail = Reply.BAD_IMAGE, int(err)
        elif kind == "bad_target":
            image, _ = _image(rng, cfg, 0)
            d0 = int(rng.choice([int(rng.integers(2, 256)),
                                 int(Target.WGT) | int(rng.integers(cfg.pes, 256)) << 8,
                                 int(rng.integers(1, 1 << 16)) << 16]))
            frame, code = request_frame(Cmd.LOAD, 0, [d0, 0, 0] + image), Reply.BAD_TARGET
        elif kind == "too_big":
            target = int(rng.integers(0, 2))
            image, _ = _image(rng, cfg, target)
            depth = cfg.wgt_mem_chunks if target else cfg.act_mem_chunks
            desc = [target, depth - 1, 0]
            if target and rng.random() < 0.5:
                desc = [target, 0, cfg.wval_mem_words - 1]     # weight values past the end
            frame, code = request_frame(Cmd.LOAD, 0, desc + image), Reply.TOO_BIG
        elif kind == "bad_cmd":
            if rng.random() < 0.5:
                frame = request_frame(int(rng.choice([0, *range(6, 256)])), 0,
                                      [int(v) for v in rng.integers(0, 99, 3)])
            else:
                frame = _raw(int(Cmd.WRITE) | int(rng.integers(1, 256)) << 8 | 1 << 16,
                             REG["C"], [999])
            code = Reply.BAD_CMD
        elif kind == "bad_length":
            frame = [request_frame(Cmd.WRITE, REG["C"], []),
                     request_frame(Cmd.LOAD, 0, [0] * int(rng.integers(0, LOAD_WORDS + 11))),
                     request_frame(Cmd.READ, REG["C"], count=0),
                     request_frame(Cmd.STATUS, 0, [1]),
                     request_frame(Cmd.START, 1, [1, 2])][len(out) % 5]
            code = Reply.BAD_LENGTH
        elif kind == "embedded":
            filler = bytes(int(b) for b in rng.integers(0, 256, 4 * int(rng.integers(0, 40))))
            pad = filler + poison
            pad += bytes(-len(pad) % 4)
            words = [int.from_bytes(pad[k:k + 4], "little") for k in range(0, len(pad), 4)]
            b = bytearray(request_frame(Cmd.WRITE, REG["K"], [5, 6] + words))
            b[3:5] = (1).to_bytes(2, "little")                  # H0's count cut to 1
            frame, code = bytes(b), Reply.BAD_CRC
        else:                                                   # sync_after
            bad = bytearray(request_frame(Cmd.WRITE, REG["C"], [999]))
            bad[-1] ^= 1 << int(rng.integers(0, 8))
            tail = poison[:int(rng.integers(1, len(poison) + 1))]
            frame, code = bytes(bad) + tail, Reply.BAD_CRC
        if code != Reply.BAD_IMAGE:
            detail = 0 if code != Reply.TIMEOUT else None
        out.append({"kind": kind, "frame": frame.hex(), "code": int(code), "detail": detail})
    return out


def _layer(rng, cfg: Config, weight_format: str, act_format: str) -> dict:
    C = K = 16
    w = np.where(rng.random((K, C, 3, 3)) < 0.5, rng.integers(-128, 128, (K, C, 3, 3)), 0)
    if weight_format == "nm":
        w = prune_nm(w.transpose(1, 0, 2, 3), cfg.nm_n, cfg.nm_m).transpose(1, 0, 2, 3)
    a = np.where(rng.random((C, 8, 8)) < 0.5, rng.integers(-128, 128, (C, 8, 8)), 0)
    rq = [rng.integers(1, 200, K).tolist(), rng.integers(8, 14, K).tolist()]
    return {"w": w.tolist(), "a": a.tolist(), "stride": 1, "pad": 1, "requant": rq,
            "relu": True, "weight_format": weight_format, "act_format": act_format}


def _golden(s: dict) -> list[int]:
    acc = conv2d_golden(np.array(s["w"]), np.array(s["a"]), s["stride"], s["pad"])
    return requantize(acc, np.array(s["requant"][0]), np.array(s["requant"][1]),
                      relu=s["relu"]).ravel().tolist()


def _same(what: str, got, want) -> str | None:
    if got == want:
        return None
    bad = [i for i, (g, w) in enumerate(zip(got, want, strict=False)) if g != w]
    first = bad[0] if bad else min(len(got), len(want))
    return (f"{what}: {len(bad)} of {len(want)} differ (lengths {len(got)}, {len(want)}); "
            f"first at {first}: RTL {got[first:first + 4]}, reference {want[first:first + 4]}")


def run_fuzz(n: int, seed: int, cfg: Config | None = None, sim: str = "verilator",
             out=sys.stdout) -> dict:
    """Run the benchmark (see the module's docstring); returns its figures, with
    ``failures`` listing every check that failed (empty when all passed)."""
    from ..tb.runner import SIM_BAUD, SIM_CLOCK_HZ, run_system_rtl

    cfg = cfg or Config()
    rng = np.random.default_rng(seed)
    fuzz = fuzz_frames(rng, cfg, n)
    first = _layer(rng, cfg, "bitmap", "rle")
    second = _layer(rng, cfg, "nm", "bitmap")
    steps = [{"layer": first}, {"read": [REG["C"], DESC_WORDS]}, {"status": True},
             {"frames": [f["frame"] for f in fuzz]},
             {"read": [REG["C"], DESC_WORDS]}, {"status": True},
             {"rerun": True}, {"layer": second}]
    print(f"UART fuzz: {n} corrupted requests, seed {seed}, {sim}", file=out, flush=True)
    t0 = time.time()
    r1, desc0, st0, frames, desc1, st1, rerun, r2 = run_system_rtl(cfg, steps, sim=sim)
    wall = time.time() - t0
    fails: list[str] = []
    by_code: dict[str, int] = {}
    by_kind: dict[str, int] = {}
    wrong, accepted, missing, stray = [], 0, 0, 0
    for i, (f, rep) in enumerate(zip(fuzz, frames["replies"], strict=True)):
        by_kind[f["kind"]] = by_kind.get(f["kind"], 0) + 1
        if rep is None:
            missing += 1
            wrong.append(f"request {i} ({f['kind']}): no reply; frame {f['frame']}")
            continue
        code, detail, _words, extra = rep
        name = Reply(code).name if code in Reply._value2member_map_ else str(code)
        by_code[name] = by_code.get(name, 0) + 1
        accepted += code == Reply.OK
        stray += extra
        if code != f["code"] or (f["detail"] is not None and detail != f["detail"]):
            wrong.append(f"request {i} ({f['kind']}): RTL {name} detail {detail}, reference "
                         f"{Reply(f['code']).name} detail {f['detail']}; frame {f['frame']}")
    refused = n - accepted - missing
    fails += wrong[:10]
    if stray:
        fails.append(f"{stray} bytes arrived in the pauses after refusals (false frames)")
    for what, rec, layer in (("first layer", r1, first), ("first layer rerun", rerun, first),
                             ("second layer", r2, second)):
        if rec.get("error"):
            fails.append(f"{what}: engine error {rec['error']}")
        msg = _same(what, rec.get("out", []), _golden(layer))
        if msg:
            fails.append(msg)
    msg = _same("descriptor after the fuzz", desc1["words"], desc0["words"])
    if msg:
        fails.append(msg)
    if st1["refused"] - st0["refused"] != n:
        fails.append(f"STATUS refused went {st0['refused']} -> {st1['refused']}, "
                     f"{n} requests were sent")
    res = {"requests": n, "seed": seed, "by_kind": by_kind, "by_code": by_code,
           "refused": refused, "wrongly_accepted": accepted, "wrong_code": len(wrong) - missing,
           "missing_reply": missing, "stray_bytes": stray, "fuzz_cycles": int(frames["cycles"]),
           "first_layer_bit_exact": _same("", r1.get("out"), _golden(first)) is None,
           "rerun_bit_exact": _same("", rerun.get("out"), _golden(first)) is None,
           "second_layer_bit_exact": _same("", r2.get("out"), _golden(second)) is None,
           "descriptor_unchanged": desc1["words"] == desc0["words"],
           "status": {"before": st0, "after": st1},
           "load_throughput_first_layer": r1["load_request_bytes"] * 10
           * (SIM_CLOCK_HZ / SIM_BAUD) / r1["load_request_cycles"],
           "wall_s": round(wall, 1), "failures": fails}
    print(f"kinds:   {by_kind}", file=out)
    print(f"replies: {by_code}", file=out)
    print(f"refused {refused} of {n}; wrongly accepted {accepted}; wrong code "
          f"{res['wrong_code']}; no reply {missing}; stray bytes after refusals {stray}",
          file=out)
    print(f"descriptor unchanged: {res['descriptor_unchanged']}; STATUS refused "
          f"{st0['refused']} -> {st1['refused']}; first layer, rerun without reloading, "
          f"second layer bit-exact: {res['first_layer_bit_exact']}, "
          f"{res['rerun_bit_exact']}, {res['second_layer_bit_exact']}", file=out)
    print(f"{res['fuzz_cycles']:,} cycles for the corrupted requests; wall time "
          f"{wall:.1f} s (build included if it was built)", file=out)
    for msg in fails:
        print("FAIL", msg, file=out)
    print("PASS" if not fails else f"{len(fails)} checks failed", file=out, flush=True)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m doublesparse.scripts.bench_uart",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=1000, help="corrupted requests (1000)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--sim", choices=("verilator", "icarus"), default="verilator")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args(argv)
    res = run_fuzz(args.frames, args.seed, sim=args.sim)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    return 1 if res["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
