"""cocotb on the engine's emitted Verilog under every simulator in ``DS_SIMS``: small layers
covering densities 0..1, stride and padding, K not a multiple of P, C not a multiple of
the scan width, C above it (two chunks a tap), 1x1 convolutions, a fully-connected layer
(1x1 conv on a 1x1 image), an all-zero and a dense layer, requantization with and
without ReLU (clamped both ways), per-channel biases (raw and requantized, some wrapping
the 32-bit accumulator); bad descriptors end in an error code without a hang and
the next job is still correct; the performance model is checked against the RTL."""

from __future__ import annotations

import os

import numpy as np
import pytest

from doublesparse.rtl.engine import EngineError
from doublesparse.sim.config import Config
from doublesparse.sim.conv import add_bias, conv2d_golden, make_job, requantize
from doublesparse.sim.engine_model import engine_cycles
from doublesparse.tb.runner import engine_run_dict, run_engine_rtl
from doublesparse.tb.stimulus import random_tensor

SIMS = [s for s in os.environ.get("DS_SIMS", "verilator,icarus").split(",") if s]
SEED = int(os.environ.get("DS_SEED", "4"))
# the default config: its simulator models are the ones the CLI and demo tests build too
CFG = Config()
# two output lanes (lane-interleaved output memory, the scheduler's lane rule, ENCODE's
# reads across lanes)
CFG_LANES = CFG.replace(pes=4, out_lanes=2)


def _naive_conv(w, a, stride, pad):
    """Second reference: direct loops over every output and tap."""
    K, C, R, S = w.shape
    _, H, W = a.shape
    Ho, Wo = (H + 2 * pad - R) // stride + 1, (W + 2 * pad - S) // stride + 1
    out = np.zeros((K, Ho, Wo), np.int64)
    for oy in range(Ho):
        for ox in range(Wo):
            for r in range(R):
                for s in range(S):
                    iy, ix = oy * stride + r - pad, ox * stride + s - pad
                    if 0 <= iy < H and 0 <= ix < W:
                        out[:, oy, ox] += w[:, :, r, s].astype(np.int64) @ a[:, iy, ix]
    return out


# (name, K, C, R, S, H, W, stride, pad, d_w, d_a, requant: None, "relu" or "linear")
CASES = [
    ("3x3_pad1", 6, 20, 3, 3, 5, 6, 1, 1, 0.3, 0.5, None),
    ("3x3_stride2_requant", 5, 17, 3, 3, 7, 6, 2, 0, 0.5, 0.6, "relu"),
    ("5x5_pad2_stride2", 4, 9, 5, 5, 6, 5, 2, 2, 0.4, 0.4, None),
    ("7x7_pad3", 3, 5, 7, 7, 4, 4, 1, 3, 0.5, 0.7, None),
    ("1x1", 9, 33, 1, 1, 3, 4, 1, 0, 0.25, 0.5, "linear"),
    ("fc", 10, 40, 1, 1, 1, 1, 1, 0, 0.3, 0.6, None),
    ("all_zero_weights", 4, 16, 3, 3, 4, 4, 1, 1, 0.0, 0.5, None),
    ("dense", 4, 16, 3, 3, 4, 4, 1, 1, 1.0, 1.0, None),
    ("sparse_acts", 7, 24, 3, 3, 5, 5, 1, 1, 1.0, 0.05, "relu"),
    ("c_over_S", 3, 70, 3, 3, 4, 4, 1, 1, 0.3, 0.5, None),
]
# layers with a per-channel bias: small ones, and full int32 ones ("fc", raw: the sums
# wrap like the 32-bit accumulator)
BIASED = {"3x3_pad1": 2000, "3x3_stride2_requant": 3000, "1x1": 5000, "fc": 2**31}


@pytest.mark.parametrize("sim", SIMS)
def test_engine_layers(sim: str) -> None:
    print(f"seed {SEED} (set DS_SEED to change)")
    rng = np.random.default_rng(SEED)
    runs, refs, jobs = [], [], []
    for name, K, C, R, S, H, W, st, pad, dw, da, rq in CASES:
        w = random_tensor(rng, (K, C, R, S), dw, extreme=name == "dense")
        a = random_tensor(rng, (C, H, W), da, extreme=name == "dense")
        acc = conv2d_golden(w, a, st, pad)
        assert np.array_equal(acc, _naive_conv(w, a, st, pad)), name
        req = bias = None
        if name in BIASED:
            bias = rng.integers(-BIASED[name], BIASED[name], K)
            acc = add_bias(acc, bias, CFG.acc_width)
        ref = acc
        if rq:
            req = (rng.integers(1, 300, K), rng.integers(6, 14, K))
            ref = requantize(acc, *req, relu=rq == "relu")
            if rq == "linear":      # the layer must reach both ends of the int8 clamp
                assert (ref == 127).any() and (ref == -128).any() and (ref < 0).any(), ref
        job = make_job(w, a, CFG, st, pad, req, rq != "linear", balance=name != "1x1",
                       bias=bias)
        runs.append(engine_run_dict(job, CFG))
        refs.append((name, ref))
        jobs.append(job)
    # bad descriptors: zero size, then one that does not fit; each followed by a good job
    good = runs[0]
    bad_zero = dict(good, load=False, desc=dict(good["desc"], C=0))
    bad_big = dict(good, load=False, desc=dict(good["desc"], H=200, W=200, Ho=200, Wo=200,
                                                 pad=1))
    bad_desc = dict(good, load=False, desc=dict(good["desc"], Ho=good["desc"]["Ho"] + 1))
    again = dict(good, load=True)       # memories hold the last layer: reload job 0
    runs += [bad_zero, again, bad_big, again, bad_desc, again]
    res = run_engine_rtl(CFG, runs, sim=sim)
    for (name, ref), r, job in zip(refs, res, jobs, strict=False):
        assert r["error"] == 0, (name, r)
        y = np.array(r["out"]).reshape(ref.shape)
        if not np.array_equal(y, ref):
            bad = np.argwhere(y != ref)[0]
            pytest.fail(f"{name}: first difference at {tuple(bad)}: rtl {y[tuple(bad)]} "
                        f"golden {ref[tuple(bad)]}")
        pred = engine_cycles(job, CFG)
        # these layers are tiny (tens to hundreds of cycles, accumulations of a few
        # chunks) so fixed latencies weigh (worst 6.3 % here, on the stride-2 layer); the
        # 5 % target is checked on the benchmark layers by `doublesparse bench engine`
        print(f"{name}: rtl {r['cycles']} cycles, model {pred}")
        assert abs(pred / r["cycles"] - 1) <= 0.10, (name, pred, r["cycles"])
        assert r["macs"] == sum(r["pe_macs"])
    tail = res[len(refs):]
    assert [t["error"] for t in tail] == [EngineError.BAD_SHAPE, 0, EngineError.TOO_BIG, 0,
                                         EngineError.BAD_DESC, 0]
    for t in tail[1::2]:
        assert np.array_equal(np.array(t["out"]).reshape(refs[0][1].shape), refs[0][1])


@pytest.mark.parametrize("lanes", [1, 2])
@pytest.mark.parametrize("sim", SIMS)
def test_layers_chain_through_encode(sim: str, lanes: int) -> None:
    """Layer 1 (requantized int8) is re-encoded in hardware into the activation memory;
    layer 2 runs on it without the host loading activations, and must equal the golden
    model applied to the golden layer-1 output. A raw job refuses to encode. With two
    output lanes (``CFG_LANES``) too."""
    CFG = {1: globals()["CFG"], 2: CFG_LANES}[lanes]
    rng = np.random.default_rng(SEED + 7)
    w1 = random_tensor(rng, (12, 20, 3, 3), 0.4)
    a1 = random_tensor(rng, (20, 5, 6), 0.6)
    req = (rng.integers(20, 200, 12), np.full(12, 10))
    y1 = requantize(conv2d_golden(w1, a1, 1, 1), *req, relu=True)
    w2 = random_tensor(rng, (7, 12, 3, 3), 0.5)
    y2 = conv2d_golden(w2, y1, 2, 1)
    job1 = make_job(w1, a1, CFG, 1, 1, req, True)
    job2 = make_job(w2, y1, CFG, 2, 1)            # its act image is not loaded
    r1 = dict(engine_run_dict(job1, CFG), encode=True)
    r2 = dict(engine_run_dict(job2, CFG), load_act=False, encode=True)
    # a second chain: K = 32 (two whole chunks a pixel), then K = 1
    # (a pixel of one channel), each re-encoded and read by the next layer
    w3 = random_tensor(rng, (32, 20, 1, 1), 0.5)
    req3 = (rng.integers(20, 200, 32), np.full(32, 9))
    y3 = requantize(conv2d_golden(w3, a1, 1, 0), *req3, relu=True)
    w4 = random_tensor(rng, (1, 32, 3, 3), 0.6)
    req4 = (np.array([int(rng.integers(5, 40))]), np.array([9]))
    y4 = requantize(conv2d_golden(w4, y3, 1, 1), *req4, relu=True)
    w5 = random_tensor(rng, (3, 1, 2, 2), 0.9)
    y5 = conv2d_golden(w5, y4, 1, 0)
    assert np.count_nonzero(y3) and np.count_nonzero(y4), "a chain of all-zero layers"
    r3 = dict(engine_run_dict(make_job(w3, a1, CFG, 1, 0, req3, True), CFG), encode=True)
    r4 = dict(engine_run_dict(make_job(w4, y3, CFG, 1, 1, req4, True), CFG),
              load_act=False, encode=True)
    r5 = dict(engine_run_dict(make_job(w5, y4, CFG, 1, 0), CFG), load_act=False)
    res = run_engine_rtl(CFG, [r1, r2, r3, r4, r5], sim=sim)
    for i, (r, y) in enumerate([(res[2], y3), (res[3], y4), (res[4], y5)], 3):
        assert r["error"] == 0, (i, r["error"])
        got = np.array(r["out"]).reshape(y.shape)
        if not np.array_equal(got, y):
            bad = tuple(np.argwhere(got != y)[0])
            pytest.fail(f"second chain, layer {i} differs at {bad}: rtl {got[bad]} "
                        f"golden {y[bad]} (K = {y.shape[0]})")
        if i < 5:
            assert (r["encode_status"] >> 4) == 0, (i, r["encode_status"])
    assert res[0]["error"] == 0 and (res[0]["encode_status"] >> 4) == 0, res[0]
    assert np.array_equal(np.array(res[0]["out"]).reshape(y1.shape), y1)
    assert res[1]["error"] == 0
    out2 = np.array(res[1]["out"]).reshape(y2.shape)
    if not np.array_equal(out2, y2):
        bad = np.argwhere(out2 != y2)[0]
        pytest.fail(f"chained layer 2 differs at {tuple(bad)}: rtl {out2[tuple(bad)]} "
                    f"golden {y2[tuple(bad)]}")
    assert (res[1]["encode_status"] >> 4) == EngineError.NOT_INT8     # layer 2 was raw
