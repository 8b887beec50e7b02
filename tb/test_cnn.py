"""The committed digits CNN (sim/digits_cnn.npz): format, sparsity, requantization limits,
int8 golden accuracy against the float model, engine limits, and reproducible training."""

from __future__ import annotations

import numpy as np
import pytest

from doublesparse.scripts.train_digits import requant_params, train
from doublesparse.sim.cnn import (
    DEFAULT_PATH,
    LAYERS,
    NetworkError,
    digits_split,
    float_forward,
    int8_forward,
    layer_job,
    load_network,
    quantize_input,
)
from doublesparse.sim.config import Config
from doublesparse.sim.conv import conv2d_golden, make_job, requantize


@pytest.fixture(scope="module")
def net():
    return load_network()


@pytest.fixture(scope="module")
def test_set(net):
    return digits_split(net)


def test_loads_without_pickle(net):
    with np.load(DEFAULT_PATH, allow_pickle=False) as z:
        assert "q0" in z.files
    assert DEFAULT_PATH.stat().st_size < 200_000, DEFAULT_PATH.stat().st_size
    for i, L in enumerate(LAYERS):
        shape = (L["K"], L["C"], L["R"], L["S"])
        assert net.weights[i].shape == shape and net.weights[i].dtype == np.float32
        assert net.qweights[i].shape == shape and net.qweights[i].dtype == np.int8
        assert (net.requant[i] is None) == L["raw"]


def test_missing_or_malformed_file(tmp_path):
    missing = tmp_path / "nope.npz"
    with pytest.raises(NetworkError, match="nope.npz"):
        load_network(missing)
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros(3))
    with pytest.raises(NetworkError, match="bad.npz"):
        load_network(bad)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(NetworkError, match="junk.npz"):
        load_network(junk)


def test_sparsity(net):
    zeros = [int(np.sum(q == 0)) for q in net.qweights]
    sizes = [q.size for q in net.qweights]
    overall = sum(zeros) / sum(sizes)
    print("zero weights per layer:", {L["name"]: f"{z}/{n}" for L, z, n
                                      in zip(LAYERS, zeros, sizes, strict=True)},
          f"overall {overall:.4f}")
    assert overall >= 0.80, f"overall zero fraction {overall:.4f} < 0.80"
    # the float weights carry the same pruning masks (int8 rounding may only add zeros)
    for w, q in zip(net.weights, net.qweights, strict=True):
        assert np.all(q[w == 0] == 0)


def test_requant_limits(net):
    s_in = net.input_scale
    for i, L in enumerate(LAYERS[:-1]):
        mult, shift = net.requant[i]
        assert mult.dtype == np.int64 and shift.dtype == np.int64
        assert mult.min() >= -(1 << 15) and mult.max() < 1 << 15, (L["name"], mult)
        assert shift.min() >= 0 and shift.max() <= 47, (L["name"], shift)
        M = s_in * net.weight_scales[i] / net.act_scales[i]
        rel = np.abs(mult / 2.0 ** shift - M) / M
        assert rel.max() < 2.0 ** -14, (L["name"], rel.max())
        m2, s2 = requant_params(M)
        np.testing.assert_array_equal(m2, mult)
        np.testing.assert_array_equal(s2, shift)
        s_in = net.act_scales[i]
    np.testing.assert_allclose(net.fc_scale, s_in * net.weight_scales[-1])


def test_requant_params_largest_shift():
    mult, shift = requant_params(np.array([0.5, 1e-3, 0.999999, 3.0]))
    # 0.999999 * 2**15 rounds to 32768, one too many for int16: shift 14
    assert list(mult) == [16384, 16777, 16384, 24576], mult
    assert list(shift) == [15, 24, 14, 13], shift


def test_split_disjoint_and_complete(net):
    from sklearn.datasets import load_digits

    n = len(load_digits().target)
    tr, te = set(net.train_idx.tolist()), set(net.test_idx.tolist())
    assert not tr & te, sorted(tr & te)[:10]
    assert tr | te == set(range(n)), (len(tr), len(te), n)
    assert len(te) == len(net.test_idx) and len(tr) == len(net.train_idx)


def test_int8_accuracy_matches_float(net, test_set):
    X, y = test_set
    float_acc = float(np.mean(float_forward(net, X / 16.0).argmax(1) == y))
    int8_pred = np.array([int(np.argmax(int8_forward(net, p)[0])) for p in X])
    int8_acc = float(np.mean(int8_pred == y))
    print(f"{len(y)} test images: float accuracy {float_acc:.4f}, int8 golden {int8_acc:.4f}")
    assert float_acc >= 0.95, float_acc
    assert abs(int8_acc - float_acc) <= 0.01, (float_acc, int8_acc)
    assert float_acc == pytest.approx(net.meta["float_test_acc"])
    assert int8_acc == pytest.approx(net.meta["int8_test_acc"])


def test_quantize_input():
    p = np.arange(64).reshape(8, 8) % 17
    q = quantize_input(p)
    assert q.shape == (1, 8, 8) and q.dtype == np.int8
    np.testing.assert_array_equal(q[0], np.floor(p * 127 / 16 + 0.5).astype(np.int8))
    assert quantize_input(np.full((8, 8), 16)).max() == 127
    with pytest.raises(ValueError):
        quantize_input(np.full((8, 8), 17))


def test_layers_fit_default_config_and_chain(net, test_set):
    X, _ = test_set
    cfg = Config()
    logits, inputs, acc_fc = int8_forward(net, X[0])
    assert acc_fc.dtype == np.int32 and acc_fc.shape == (10,)
    np.testing.assert_allclose(logits, acc_fc * net.fc_scale)
    assert [a.shape for a in inputs] == [(1, 8, 8), (16, 8, 8), (32, 4, 4), (512, 1, 1)]
    for i in range(len(LAYERS)):
        job = layer_job(net, i, inputs[i])
        make_job(job["w"], job["a"], cfg, job["stride"], job["pad"], job["requant"],
                 job["relu"])  # raises LayerError if the layer does not fit
        acc = conv2d_golden(job["w"], job["a"], job["stride"], job["pad"])
        if job["requant"] is None:
            np.testing.assert_array_equal(acc.reshape(-1), acc_fc)
        else:
            y = requantize(acc, *job["requant"], relu=job["relu"])
            nxt = inputs[i + 1]
            np.testing.assert_array_equal(y.reshape(nxt.shape), nxt)
    # fc accepts conv3's (32, 4, 4) output too, flattened in C order
    conv3_out = inputs[3].reshape(32, 4, 4)
    np.testing.assert_array_equal(layer_job(net, 3, conv3_out)["a"], inputs[3])


def test_conv1_against_naive_loop(net, test_set):
    X, _ = test_set
    a = quantize_input(X[7]).astype(np.int64)
    w = net.qweights[0].astype(np.int64)
    K, C, R, S = w.shape
    ap = np.pad(a, ((0, 0), (1, 1), (1, 1)))
    ref = np.zeros((K, 8, 8), np.int64)
    for k in range(K):
        for y in range(8):
            for x in range(8):
                t = 0
                for c in range(C):
                    for r in range(R):
                        for s in range(S):
                            t += int(w[k, c, r, s]) * int(ap[c, y + r, x + s])
                ref[k, y, x] = t
    got = conv2d_golden(net.qweights[0], quantize_input(X[7]), 1, 1)
    if not np.array_equal(got, ref):
        diff = np.argwhere(got != ref)[:5]
        pytest.fail(f"conv2d_golden != naive loop at {diff.tolist()}: "
                    f"golden {[int(got[tuple(d)]) for d in diff]}, "
                    f"naive {[int(ref[tuple(d)]) for d in diff]}")


def test_training_is_reproducible(tmp_path):
    kw = {"epochs": 1, "prune_steps": 1, "prune_epochs": 1, "final_epochs": 0,
          "verbose": False}
    a = train(0, tmp_path / "a.npz", **kw)
    train(0, tmp_path / "b.npz", **kw)
    b = load_network(tmp_path / "b.npz")  # also checks the save / load round trip
    c = train(1, None, **kw)
    for i, L in enumerate(LAYERS):
        if not np.array_equal(a.weights[i], b.weights[i]):
            d = np.argwhere(a.weights[i] != b.weights[i])[:3]
            pytest.fail(f"{L['name']}: same seed, different float weights at {d.tolist()}: "
                        f"{[float(a.weights[i][tuple(x)]) for x in d]} vs "
                        f"{[float(b.weights[i][tuple(x)]) for x in d]}")
        np.testing.assert_array_equal(a.qweights[i], b.qweights[i])
    assert not np.array_equal(a.weights[1], c.weights[1]), "seed has no effect"
