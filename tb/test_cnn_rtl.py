"""The committed digits CNN still runs bit-exact through the RTL engine: every layer of a
few test images under each simulator in ``DS_SIMS``, chained on the RTL's own outputs and
compared with the golden model's layer inputs and fc accumulators; and the demo itself
end to end on a few images."""

from __future__ import annotations

import os

import numpy as np
import pytest

from doublesparse.scripts.cnn_demo import cnn_demo
from doublesparse.scripts.layer import LayerSpec, run_layers
from doublesparse.sim.cnn import LAYERS, digits_split, int8_forward, layer_job, load_network
from doublesparse.sim.config import Config
from doublesparse.sim.conv import conv2d_golden, fold_kernel

SIMS = [s for s in os.environ.get("DS_SIMS", "verilator,icarus").split(",") if s]
SEED = int(os.environ.get("DS_SEED", "7"))
# the engine tests' config (shared Verilator / Icarus builds); every layer of the network
# fits its memories
CFG = Config()


@pytest.mark.parametrize("sim", SIMS)
def test_network_layers_bit_exact(sim: str) -> None:
    net = load_network()
    X, y = digits_split(net)
    rng = np.random.default_rng(SEED)
    pick = rng.choice(len(y), size=2, replace=False)
    print(f"seed {SEED}: test images {pick.tolist()} under {sim}")
    gold = {int(j): int8_forward(net, X[j]) for j in pick}
    acts = {int(j): gold[int(j)][1][0] for j in pick}
    for i, L in enumerate(LAYERS):
        specs = []
        for j in pick:
            job = layer_job(net, i, acts[int(j)])
            if i == 0 and j == pick[0]:       # one image folded, one as the plain 3x3 conv
                job["w"], job["a"] = fold_kernel(job["w"], job["a"], job["stride"], job["pad"])
                job["stride"], job["pad"] = 1, 0
            specs.append(LayerSpec(**job))
        runs = run_layers(specs, CFG, sim=sim)
        for j, run in zip(pick, runs, strict=True):
            j = int(j)
            assert run.error == 0, f"{L['name']} image {j}: engine error {run.stats}"
            if not run.stats["match"]:
                diff = np.argwhere(run.y != run.ref)[:5]
                pytest.fail(f"{L['name']} image {j}: RTL {[run.y[tuple(d)] for d in diff]} "
                            f"golden {[run.ref[tuple(d)] for d in diff]} at {diff.tolist()}")
            acts[j] = run.y
            if i + 1 < len(LAYERS):
                want = gold[j][1][i + 1]
                got = run.y.reshape(want.shape)
                assert np.array_equal(got, want), (L["name"], j, got, want)
    for j in pick:
        j = int(j)
        acc = acts[j].reshape(-1)
        assert np.array_equal(acc, gold[j][2]), (acc, gold[j][2])
        # independent second reference for the fc layer: a plain dot product
        w = net.qweights[-1].reshape(10, -1).astype(np.int64)
        a = gold[j][1][-1].reshape(-1).astype(np.int64)
        assert np.array_equal(acc, w @ a)
        print(f"image {j}: label {y[j]}, RTL class {int(np.argmax(acc * net.fc_scale))}")


def test_fold_kernel_is_the_same_convolution() -> None:
    rng = np.random.default_rng(SEED)
    for stride, pad in ((1, 0), (1, 1), (2, 1)):
        w = rng.integers(-128, 128, (5, 3, 3, 3)).astype(np.int8)
        a = rng.integers(-128, 128, (3, 7, 6)).astype(np.int8)
        w2, a2 = fold_kernel(w, a, stride, pad)
        ref = conv2d_golden(w, a, stride, pad)
        got = conv2d_golden(w2, a2, 1, 0)
        assert np.array_equal(got, ref), (stride, pad, got, ref)
        # and an einsum over the folded view as a second reference
        assert np.array_equal(np.einsum("kc,chw->khw", w2[:, :, 0, 0].astype(np.int64),
                                        a2.astype(np.int64)), ref)


def test_demo_end_to_end(capsys) -> None:
    rc = cnn_demo(CFG, sim=SIMS[0], images=3, batch=2, seed=SEED)
    out = capsys.readouterr().out
    print(out)
    assert rc == 0
    assert "all 12 layer runs bit-exact with the golden model" in out
    assert "RTL predictions equal the golden model's on 3/3" in out
    for L in LAYERS:
        assert L["name"] in out
