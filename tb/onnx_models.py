"""Quantized ONNX test models (QDQ form), built with :mod:`doublesparse.sim.onnx_build`.

Every function returns ``(model, x)``: a checked ``onnx.ModelProto`` and a float32 input
with its batch axis. Everything is seeded. Weights are pruned int8 (about half or more of
them zero, in -127..127, symmetric per-channel or per-tensor scales); biases are int32 of
the size of a typical accumulator; inputs are symmetric, so about half of each ReLU output
is nonzero. Activation output scales are ``"auto"``: ``percentile(|y|, 99.5) / 127`` of the
float tensor on ``x`` (``QDQBuilder.auto_scale``), so int8 tensors use their range without
saturating.

Valid models (within the engine's limits: channels up to 64, images up to 16 x 16, kernels
up to 7 x 7, stride 1 or 2, symmetric pads): :func:`small_cnn`, :func:`residual_cnn`,
:func:`mlp`, :func:`avgpool_cnn`, :func:`float_weight_cnn`, :func:`random_model`.
Models the importer must refuse (each valid ONNX, one construct out of the subset):
:func:`grouped_conv`, :func:`dilated_conv`, :func:`asymmetric_pad_conv`,
:func:`uint8_activations`, :func:`unsupported_op`, :func:`big_kernel`.
"""

from __future__ import annotations

import numpy as np
import onnx

from doublesparse.sim.onnx_build import QDQBuilder

__all__ = ["VALID", "REFUSED", "small_cnn", "residual_cnn", "mlp", "avgpool_cnn",
           "float_weight_cnn", "grouped_conv", "dilated_conv", "asymmetric_pad_conv",
           "uint8_activations", "unsupported_op", "big_kernel", "random_model",
           "pruned_weights", "bias_for"]

Model = tuple[onnx.ModelProto, np.ndarray]

VALID = ("small_cnn", "residual_cnn", "mlp", "avgpool_cnn", "float_weight_cnn")
REFUSED = ("grouped_conv", "dilated_conv", "asymmetric_pad_conv", "uint8_activations",
           "unsupported_op", "big_kernel")


def pruned_weights(rng: np.random.Generator, shape: tuple[int, ...], density: float = 0.4,
                   per_channel: bool = True, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random pruned weights: int8 ``shape`` with about ``density`` nonzero (at least one
    per output channel), symmetric scale ``max|w| / 127`` per output channel (``axis``) or
    per tensor. Returns ``(w_int8, scale)``: scale float32 (K,) or a 0-d array."""
    fan_in = int(np.prod(shape)) // shape[axis]
    w = rng.standard_normal(shape) * np.sqrt(2.0 / (fan_in * density))
    mask = rng.random(shape) < density
    wm = np.moveaxis(w, axis, 0)
    mm = np.moveaxis(mask, axis, 0)                  # views: writes go through
    for k in range(wm.shape[0]):
        if not mm[k].any():
            mm[k][np.unravel_index(rng.integers(mm[k].size), mm[k].shape)] = True
    w = w * mask
    red = tuple(i for i in range(len(shape)) if i != axis)
    amax = np.abs(w).max(axis=red) if per_channel else np.abs(w).max()
    scale = (np.asarray(amax) / 127.0).astype(np.float32)
    bshape = [1] * len(shape)
    if per_channel:
        bshape[axis] = -1
    q = np.clip(np.rint(w / scale.reshape(bshape)), -127, 127).astype(np.int8)
    return q, scale


def bias_for(b: QDQBuilder, rng: np.random.Generator, q: np.ndarray, axis: int = 0,
             spread: float = 0.3) -> np.ndarray:
    """An int32 bias (K,) for weights ``q`` on the builder's current activation: normal
    with ``spread`` times each output channel's accumulator standard deviation on the
    calibration input (``sqrt(sum q_k**2 * mean(a_int**2))``)."""
    a = b.evaluate(b.current.name) / b.current.scale
    qk = np.moveaxis(q.astype(np.float64), axis, 0).reshape(q.shape[axis], -1)
    std = np.sqrt((qk ** 2).sum(axis=1) * np.mean(a.astype(np.float64) ** 2))
    return np.rint(rng.normal(0.0, spread, q.shape[axis]) * std).astype(np.int32)


def _input(rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[np.ndarray, float]:
    """A symmetric float input and its scale (``max|x| / 127``)."""
    x = rng.uniform(-1.0, 1.0, shape).astype(np.float32)
    return x, float(np.abs(x).max()) / 127.0


def small_cnn(seed: int = 1) -> Model:
    """(1, 3, 12, 12) -> conv1 3->8 3x3 pad 1 + bias + Relu -> conv2 8->16 3x3 stride 2
    pad 1 + bias + Relu -> MaxPool 2x2 -> Flatten (144) -> Gemm 144->10 + bias, raw float
    output ``logits``."""
    rng = np.random.default_rng(seed)
    x, s = _input(rng, (1, 3, 12, 12))
    b = QDQBuilder("x", ("N", 3, 12, 12), s, calib=x, graph_name="small_cnn")
    w, ws = pruned_weights(rng, (8, 3, 3, 3), 0.5)
    b.conv("conv1", w, ws, bias_for(b, rng, w), stride=1, pad=1)
    w, ws = pruned_weights(rng, (16, 8, 3, 3), 0.35)
    b.conv("conv2", w, ws, bias_for(b, rng, w), stride=2, pad=1)
    b.maxpool("pool", 2)
    b.flatten("flatten")
    w, ws = pruned_weights(rng, (10, 144), 0.3)
    b.gemm("fc", w, ws, bias_for(b, rng, w))
    return b.model("logits"), x


def residual_cnn(seed: int = 2) -> Model:
    """(1, 8, 8, 8) -> conv1 8->16 3x3 pad 1 + Relu (r) -> conv2 16->16 3x3 pad 1 + bias,
    no Relu (signed) -> Add(., r) (different scales) -> Relu (host) -> Q -> GlobalAveragePool
    -> Q -> Flatten -> Gemm 16->10 + bias -> Q -> DQ output ``y``."""
    rng = np.random.default_rng(seed)
    x, s = _input(rng, (1, 8, 8, 8))
    b = QDQBuilder("x", ("N", 8, 8, 8), s, calib=x, graph_name="residual_cnn")
    w, ws = pruned_weights(rng, (16, 8, 3, 3), 0.4)
    r = b.conv("conv1", w, ws, stride=1, pad=1)
    w, ws = pruned_weights(rng, (16, 16, 3, 3), 0.3)
    b.conv("conv2", w, ws, bias_for(b, rng, w), pad=1, relu=False)
    b.add("res", r, relu=True)
    b.global_avgpool("gap", out_scale="auto")
    b.flatten("flatten")
    w, ws = pruned_weights(rng, (10, 16), 0.5)
    b.gemm("fc", w, ws, bias_for(b, rng, w), out_scale="auto")
    return b.model("y"), x


def mlp(seed: int = 3) -> Model:
    """(1, 64) -> MatMul 64->32 (per-channel, axis 1) + Add bias + Relu -> Q -> Gemm 32->10
    (per-tensor weight scale) + bias, raw float output ``logits``."""
    rng = np.random.default_rng(seed)
    x, s = _input(rng, (1, 64))
    b = QDQBuilder("x", ("N", 64), s, calib=x, graph_name="mlp")
    w, ws = pruned_weights(rng, (64, 32), 0.3, axis=1)
    b.matmul("fc1", w, ws, bias_for(b, rng, w, axis=1), relu=True, out_scale="auto")
    w, ws = pruned_weights(rng, (10, 32), 0.4, per_channel=False)
    b.gemm("fc2", w, ws, bias_for(b, rng, w))
    return b.model("logits"), x


def avgpool_cnn(seed: int = 4) -> Model:
    """(1, 4, 12, 12) -> conv1 4->8 5x5 pad 2 + Relu -> AveragePool 2x2 stride 2 (its own
    calibrated scale) -> conv2 8->4 1x1 + bias + Relu -> Reshape (-1, 144) -> Q -> DQ (same
    scale) -> Gemm 144->10, raw ``logits``.

    The pool's scale is not its input's: on the same grid the mean of four int8 values often
    ends in .5, where ONNX Runtime (which fuses DQ -> AveragePool -> Q into an integer
    QLinearAveragePool) rounds differently from the reference. The Q -> DQ after the
    Reshape (as ``quantize_static`` writes it) is needed by ONNX Runtime 1.30: with a
    Reshape between a DequantizeLinear and the Gemm, its QDQ propagation (graph optimization
    level EXTENDED) makes an invalid node ``reshape_q``."""
    rng = np.random.default_rng(seed)
    x, s = _input(rng, (1, 4, 12, 12))
    b = QDQBuilder("x", ("N", 4, 12, 12), s, calib=x, graph_name="avgpool_cnn")
    w, ws = pruned_weights(rng, (8, 4, 5, 5), 0.3)
    b.conv("conv1", w, ws, pad=2)
    b.avgpool("pool", 2, 2, out_scale="auto")
    w, ws = pruned_weights(rng, (4, 8, 1, 1), 0.6)
    b.conv("conv2", w, ws, bias_for(b, rng, w))
    b.reshape("reshape", (-1, 144), requant=True)
    w, ws = pruned_weights(rng, (10, 144), 0.3)
    b.gemm("fc", w, ws)
    return b.model("logits"), x


def float_weight_cnn(seed: int = 5) -> Model:
    """Weights as float initializers through QuantizeLinear -> DequantizeLinear, per-tensor
    scales: (1, 2, 10, 10) -> conv1 2->8 3x3 pad 1 + bias + Relu -> conv2 8->8 3x3 stride 2
    pad 1 + Relu -> Flatten (200) -> Gemm 200->10 + bias, raw ``logits``."""
    rng = np.random.default_rng(seed)
    x, s = _input(rng, (1, 2, 10, 10))
    b = QDQBuilder("x", ("N", 2, 10, 10), s, calib=x, graph_name="float_weight_cnn")
    w, ws = pruned_weights(rng, (8, 2, 3, 3), 0.5, per_channel=False)
    b.conv("conv1", w, ws, bias_for(b, rng, w), pad=1, float_weights=True)
    w, ws = pruned_weights(rng, (8, 8, 3, 3), 0.4, per_channel=False)
    b.conv("conv2", w, ws, stride=2, pad=1, float_weights=True)
    b.flatten("flatten")
    w, ws = pruned_weights(rng, (10, 200), 0.3, per_channel=False)
    b.gemm("fc", w, ws, bias_for(b, rng, w), float_weights=True)
    return b.model("logits"), x


# -- models the importer must refuse -------------------------------------------------------
def _one_conv(graph: str, seed: int, wshape: tuple[int, ...], cin: int = 4, hw: int = 8,
              act_dtype: type = np.int8, act_zero_point: int = 0, **conv) -> Model:
    """(1, cin, hw, hw) -> conv 'conv1' (weights ``wshape``, ``conv`` keywords) + Relu ->
    Flatten -> Gemm to 10, raw ``logits``."""
    rng = np.random.default_rng(seed)
    x, s = _input(rng, (1, cin, hw, hw))
    b = QDQBuilder("x", ("N", cin, hw, hw), s, calib=x, graph_name=graph,
                   act_dtype=act_dtype, act_zero_point=act_zero_point)
    w, ws = pruned_weights(rng, wshape, 0.5)
    b.conv("conv1", w, ws, **conv)
    b.flatten("flatten")
    f = int(np.prod(b.evaluate(b.current.name).shape[1:]))
    w, ws = pruned_weights(rng, (10, f), 0.3)
    b.gemm("fc", w, ws)
    return b.model("logits"), x


def grouped_conv() -> Model:
    """Conv 'conv1' with group 2 (4 -> 8 channels, weights (8, 2, 3, 3))."""
    return _one_conv("grouped_conv", 11, (8, 2, 3, 3), pad=1, group=2)


def dilated_conv() -> Model:
    """Conv 'conv1' with dilations [2, 2]."""
    return _one_conv("dilated_conv", 12, (8, 4, 3, 3), pad=2, dilation=2)


def asymmetric_pad_conv() -> Model:
    """Conv 'conv1' with pads [0, 0, 1, 1] (bottom and right only)."""
    return _one_conv("asymmetric_pad_conv", 13, (8, 4, 2, 2), pad=(0, 0, 1, 1))


def uint8_activations() -> Model:
    """Every activation (the input too) quantized to uint8 with zero point 128."""
    return _one_conv("uint8_activations", 14, (8, 4, 3, 3), pad=1, act_dtype=np.uint8,
                     act_zero_point=128)


def big_kernel() -> Model:
    """Conv 'conv1' with a 9x9 kernel (pad 4 on a 12 x 12 image)."""
    return _one_conv("big_kernel", 15, (8, 4, 9, 9), hw=12, pad=4)


def unsupported_op() -> Model:
    """A Sigmoid 'sigmoid' between Q/DQ pairs: conv1 + Relu -> Q -> DQ -> Sigmoid -> Q ->
    DQ -> Flatten -> Gemm, raw ``logits``."""
    rng = np.random.default_rng(16)
    x, s = _input(rng, (1, 4, 8, 8))
    b = QDQBuilder("x", ("N", 4, 8, 8), s, calib=x, graph_name="unsupported_op")
    w, ws = pruned_weights(rng, (8, 4, 3, 3), 0.5)
    b.conv("conv1", w, ws, pad=1)
    b.unary("sigmoid", "Sigmoid", out_scale=1.0 / 127.0)
    b.flatten("flatten")
    w, ws = pruned_weights(rng, (10, 512), 0.3)
    b.gemm("fc", w, ws)
    return b.model("logits"), x


# -- random valid models -------------------------------------------------------------------
def random_model(seed: int) -> Model:
    """1-3 random conv layers (K up to 32, kernel 1/3/5, stride 1/2, symmetric pad up to
    kernel // 2, bias or not, Relu or not, per-channel or per-tensor weight scales, rarely
    float weights), optional pooling (MaxPool 2, AveragePool 2 or GlobalAveragePool), then
    Flatten and a Gemm (bias or not) with a raw or a requantized output. Input (B, C, H, H),
    B 1 or 2, C 1..8, H 6..16."""
    rng = np.random.default_rng(seed)
    c, h = int(rng.integers(1, 9)), int(rng.integers(6, 17))
    x, s = _input(rng, (int(rng.integers(1, 3)), c, h, h))
    b = QDQBuilder("x", ("N", c, h, h), s, calib=x, graph_name=f"random_{seed}")
    for i in range(int(rng.integers(1, 4))):
        k = int(rng.choice([1, 3, 5]))
        while k > h:
            k -= 2
        stride = int(rng.integers(1, 3)) if h >= 4 else 1
        pad = int(rng.integers(0, k // 2 + 1))
        K = int(rng.integers(2, 33))
        w, ws = pruned_weights(rng, (K, c, k, k), float(rng.uniform(0.25, 0.6)),
                               per_channel=bool(rng.random() < 0.7))
        bias = bias_for(b, rng, w) if rng.random() < 0.5 else None
        b.conv(f"conv{i + 1}", w, ws, bias, stride=stride, pad=pad,
               relu=bool(rng.random() < 0.8), float_weights=bool(rng.random() < 0.15))
        c, h = K, (h + 2 * pad - k) // stride + 1
    pool = int(rng.integers(0, 4)) if h >= 2 else 0
    if c * h * h > 512 and pool == 0:
        pool = 3
    if pool == 1:
        b.maxpool("pool", 2)
        h //= 2
    elif pool == 2:
        b.avgpool("pool", 2, out_scale="auto")
        h //= 2
    elif pool == 3:
        b.global_avgpool("pool", out_scale="auto")
        h = 1
    b.flatten("flatten")
    n_out = int(rng.integers(2, 11))
    w, ws = pruned_weights(rng, (n_out, c * h * h), float(rng.uniform(0.25, 0.6)),
                           per_channel=bool(rng.random() < 0.7))
    bias = bias_for(b, rng, w) if rng.random() < 0.5 else None
    b.gemm("fc", w, ws, bias, out_scale="auto" if rng.random() < 0.3 else None)
    return b.model("y"), x
