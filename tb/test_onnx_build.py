"""The QDQ model builder (``sim/onnx_build.py``), the test models (``tb/onnx_models.py``) and
the committed digits CNN as ONNX (``sim/digits_cnn.onnx``): every model passes the ONNX
checker, runs under ``onnx.reference.ReferenceEvaluator`` and ONNX Runtime with finite,
nonzero outputs, and its int8 tensors are neither all zero nor saturated; the digits model
agrees with the int8 golden model (``sim.cnn.int8_forward``) and is what ``digits_onnx``
makes of the committed npz. No RTL."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from doublesparse.sim.cnn import DEFAULT_PATH, digits_split, int8_forward, load_network
from doublesparse.sim.onnx_build import (
    IR_VERSION,
    OPSET,
    QDQBuilder,
    digits_onnx,
    reference_run,
)
from doublesparse.tb import onnx_models as M

ONNX_PATH = DEFAULT_PATH.with_suffix(".onnx")
RANDOM_SEEDS = range(7, 19)


def _ort(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: np.asarray(x, np.float32)})


def _activation_q_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """QuantizeLinear nodes of activations (not of float weights)."""
    inits = {t.name for t in model.graph.initializer}
    return [n for n in model.graph.node
            if n.op_type == "QuantizeLinear" and n.input[0] not in inits]


def _check_valid(model: onnx.ModelProto, x: np.ndarray, what: str) -> None:
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version == IR_VERSION
    assert [(o.domain, o.version) for o in model.opset_import] == [("", OPSET)]
    names = [n.name for n in model.graph.node]
    assert all(names) and len(set(names)) == len(names), f"{what}: node names {names}"
    assert model.graph.node[0].op_type == "QuantizeLinear"
    assert model.graph.node[0].input[0] == model.graph.input[0].name
    vals = reference_run(model, x, intermediate=True)
    outs = reference_run(model, x)
    for name, y in outs.items():
        assert np.all(np.isfinite(y)) and np.any(y != 0), f"{what}: output {name} {y}"
    qs = _activation_q_nodes(model)
    assert qs, what
    for n in qs:
        q = vals[n.output[0]]
        assert q.dtype == np.int8, (what, n.name, q.dtype)
        nonzero = float(np.mean(q != 0))
        saturated = float(np.mean(np.abs(q.astype(np.int64)) >= 127))
        print(f"{what}: {n.name} {q.shape}: nonzero {nonzero:.2f}, saturated {saturated:.3f}")
        assert nonzero > 0.05, f"{what}: {n.name} is {nonzero:.3f} nonzero"
        assert saturated < 0.5 and np.abs(q.astype(np.int64)).max() > 8, \
            f"{what}: {n.name} saturated {saturated:.3f}, max {np.abs(q).max()}"
    # ONNX Runtime as a second reference
    for (name, y), y_ort in zip(outs.items(), _ort(model, x), strict=True):
        assert y.shape == y_ort.shape, (what, name, y.shape, y_ort.shape)
        assert np.allclose(y, y_ort, rtol=1e-5, atol=1e-5 * np.abs(y).max()), \
            f"{what}: output {name}: reference {y.ravel()[:6]}, ONNX Runtime {y_ort.ravel()[:6]}"


@pytest.mark.parametrize("name", M.VALID)
def test_valid_models(name: str) -> None:
    model, x = getattr(M, name)()
    _check_valid(model, x, name)


def test_relu_outputs_are_half_dense() -> None:
    """Conv outputs after a ReLU folded in front of the QuantizeLinear: 30-70 % nonzero."""
    for name in M.VALID:
        model, x = getattr(M, name)()
        vals = reference_run(model, x, intermediate=True)
        for n in _activation_q_nodes(model):
            if n.input[0].endswith("_relu") and n.name.startswith(("conv", "fc")):
                d = float(np.mean(vals[n.output[0]] != 0))
                assert 0.3 <= d <= 0.7, f"{name}: {n.name} density {d:.2f}"


@pytest.mark.parametrize("seed", RANDOM_SEEDS)
def test_random_models(seed: int) -> None:
    model, x = M.random_model(seed)
    _check_valid(model, x, f"random model {seed}")


def test_models_are_seeded() -> None:
    a, xa = M.small_cnn()
    b, xb = M.small_cnn()
    assert a.SerializeToString() == b.SerializeToString() and np.array_equal(xa, xb)
    r1, _ = M.random_model(3)
    r2, _ = M.random_model(3)
    assert r1.SerializeToString() == r2.SerializeToString()


def test_weights_are_pruned_int8() -> None:
    for name in M.VALID:
        model, _ = getattr(M, name)()
        for t in model.graph.initializer:
            if t.name.endswith("_w_q"):
                w = onnx.numpy_helper.to_array(t)
                assert w.dtype == np.int8 and w.min() >= -127, (name, t.name)
                assert 0.2 <= np.mean(w == 0) <= 0.8, (name, t.name, np.mean(w == 0))


REFUSED_FEATURE = {
    "grouped_conv": lambda m: _attr(m, "conv1", "group") == 2,
    "dilated_conv": lambda m: _attr(m, "conv1", "dilations") == [2, 2],
    "asymmetric_pad_conv": lambda m: _attr(m, "conv1", "pads") == [0, 0, 1, 1],
    "uint8_activations": lambda m: all(
        onnx.numpy_helper.to_array(t).dtype == np.uint8 and onnx.numpy_helper.to_array(t) == 128
        for t in m.graph.initializer if t.name.endswith("_zp") and "_w_" not in t.name),
    "unsupported_op": lambda m: any(n.op_type == "Sigmoid" and n.name == "sigmoid"
                                    for n in m.graph.node),
    "big_kernel": lambda m: _attr(m, "conv1", "kernel_shape") == [9, 9],
}


def _attr(model: onnx.ModelProto, node: str, attr: str):
    n = next(n for n in model.graph.node if n.name == node)
    for a in n.attribute:
        if a.name == attr:
            return onnx.helper.get_attribute_value(a)
    return None


@pytest.mark.parametrize("name", M.REFUSED)
def test_refused_models_are_valid_onnx_with_their_construct(name: str) -> None:
    model, x = getattr(M, name)()
    onnx.checker.check_model(model, full_check=True)
    assert REFUSED_FEATURE[name](model), name
    y = reference_run(model, x)["logits"]
    assert np.all(np.isfinite(y)) and np.any(y != 0)


# -- the builder ---------------------------------------------------------------------------
def test_float_weights_match_int8_weights() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (1, 3, 6, 6)).astype(np.float32)
    w, ws = M.pruned_weights(rng, (5, 3, 3, 3))
    bias = rng.integers(-500, 500, 5).astype(np.int32)
    ys = []
    for fw in (False, True):
        b = QDQBuilder("x", (1, 3, 6, 6), 1 / 127, calib=x)
        b.conv("c", w, ws, bias, pad=1, out_scale=None, float_weights=fw)
        m = b.model("y")
        ops = [n.op_type for n in m.graph.node if n.name.startswith("c_w")]
        assert ops == (["QuantizeLinear", "DequantizeLinear"] if fw else ["DequantizeLinear"])
        ys.append(reference_run(m, x)["y"])
    assert np.array_equal(ys[0], ys[1])


def test_weight_and_bias_dequantization() -> None:
    """Per-channel weight scales with axis 0 (Conv, Gemm) / 1 (MatMul); int8 zero points of
    the scale's shape; bias int32 with scale s_in * s_w in float32 and int32 zero points."""
    rng = np.random.default_rng(1)
    b = QDQBuilder("x", ("N", 16), 0.01)
    w, ws = M.pruned_weights(rng, (16, 8), axis=1)
    b.matmul("mm", w, ws, np.arange(8, dtype=np.int32), relu=True, out_scale=0.05)
    w2, ws2 = M.pruned_weights(rng, (4, 8))
    b.gemm("fc", w2, ws2, np.ones(4, np.int32))
    m = b.model()
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in m.graph.initializer}
    assert _attr(m, "mm_w_dq", "axis") == 1 and _attr(m, "fc_w_dq", "axis") == 0
    assert _attr(m, "fc", "transB") == 1
    assert inits["mm_w_zp"].dtype == np.int8 and inits["mm_w_zp"].shape == (8,)
    assert inits["mm_b_q"].dtype == np.int32 and inits["mm_b_zp"].dtype == np.int32
    assert np.array_equal(inits["mm_b_scale"], np.float32(0.01) * ws)
    assert np.array_equal(inits["fc_b_scale"], np.float32(0.05) * ws2)
    assert [n.op_type for n in m.graph.node if n.name.startswith("mm")] == [
        "DequantizeLinear", "MatMul", "DequantizeLinear", "Add", "Relu", "QuantizeLinear",
        "DequantizeLinear"]
    assert [d.dim_param or d.dim_value for d in
            m.graph.output[0].type.tensor_type.shape.dim] == ["N", 4]


def test_builder_refuses_misuse() -> None:
    b = QDQBuilder("x", (1, 2, 4, 4), 0.1)
    w = np.ones((2, 2, 1, 1), np.int8)
    with pytest.raises(ValueError, match="int8"):
        b.conv("c", w.astype(np.int16), 0.1, out_scale=0.1)
    with pytest.raises(ValueError, match="scale shape"):
        b.conv("c1", w, np.ones(3), out_scale=0.1)
    with pytest.raises(ValueError, match="bias"):
        b.conv("c2", w, 0.1, np.ones(2, np.int64), out_scale=0.1)
    with pytest.raises(ValueError, match="calibration"):
        b.conv("c3", w, 0.1)                       # out_scale "auto" without calib
    b.conv("c4", w, 0.1, out_scale=0.2)
    with pytest.raises(ValueError, match="already used"):
        b.conv("c4", w, 0.1, out_scale=0.2)
    b.conv("c5", w, 0.1, out_scale=None)
    with pytest.raises(ValueError, match="last op"):
        b.conv("c6", w, 0.1, out_scale=0.2)


def test_residual_handles_and_scales() -> None:
    model, _ = M.residual_cnn()
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    add = next(n for n in model.graph.node if n.op_type == "Add")
    assert list(add.input) == ["conv2_dq", "conv1_dq"]
    assert inits["conv1_scale"] != inits["conv2_scale"]
    assert model.graph.output[0].name == "y"
    assert model.graph.node[-1].op_type == "DequantizeLinear"


# -- the digits CNN ------------------------------------------------------------------------
def test_digits_onnx_matches_the_int8_golden_model() -> None:
    net = load_network()
    model = onnx.load(ONNX_PATH)
    onnx.checker.check_model(model, full_check=True)
    assert model.SerializeToString() == digits_onnx(net).SerializeToString(), \
        "sim/digits_cnn.onnx is stale: python -m doublesparse.sim.onnx_build"
    assert [i.name for i in model.graph.input] == ["x"]
    assert [o.name for o in model.graph.output] == ["logits"]
    X, _ = digits_split(net)
    X = X[:20]
    x = (X / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    want = np.stack([int8_forward(net, p)[0] for p in X])
    ref = reference_run(model, x)["logits"]
    ort = _ort(model, x)[0]
    scale = float(np.abs(want).max())
    for got, who in ((ref, "ReferenceEvaluator"), (ort, "ONNX Runtime")):
        d = np.abs(got - want)
        i = int(np.argmax(d.max(axis=1)))
        msg = (f"{who}: image {i}: onnx {np.round(got[i], 3)}, int8_forward "
               f"{np.round(want[i], 3)}; largest difference {d.max():.4f} (logits up to "
               f"{scale:.2f})")
        print(msg)
        assert np.array_equal(got.argmax(1), want.argmax(1)), msg
        # float32 scales and rounding (QuantizeLinear half to even, requant (mult, shift)
        # half up) may move a few int8 activations by 1 LSB
        assert d.max() <= 0.01 * scale, msg
