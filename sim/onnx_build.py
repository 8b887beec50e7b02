"""Build quantized ONNX models in QDQ form (the form ``sim/onnx_import.py`` reads).

:class:`QDQBuilder` appends layers to a graph with ``onnx.helper`` and returns a checked
``onnx.ModelProto`` (opset 21 of the default domain, IR version :data:`IR_VERSION`). The
conventions are those of ONNX Runtime's ``quantize_static`` with ``QuantFormat.QDQ``,
int8 activations and weights, symmetric:

* activations: ``QuantizeLinear(x, scale, zp) -> DequantizeLinear(., scale, zp)``; a float32
  scalar scale and an int8 scalar zero point 0 (both initializers, shared by the pair). The
  graph input is float and its first consumer is a QuantizeLinear;
* weights: an int8 initializer through ``DequantizeLinear`` with a float32 scale, a scalar
  (per tensor) or one per output channel (``axis=0`` for Conv and Gemm's (out, in) weights,
  ``axis=1`` for MatMul's (in, out) weights), and int8 zero points of the same shape; or,
  with ``float_weights=True``, a float32 initializer ``w_q * scale`` through
  ``QuantizeLinear -> DequantizeLinear``;
* bias: an int32 initializer through ``DequantizeLinear`` with scale ``s_in * s_w``
  (computed in float32, as ONNX Runtime does), int32 zero points;
* an engine op (Conv, Gemm, MatMul [+ Add bias]) is followed by an optional ``Relu`` and
  ``QuantizeLinear -> DequantizeLinear`` of its output scale, or by nothing (a raw float
  output, which must be the model's output);
* host ops (MaxPool, AveragePool, GlobalAveragePool, Add, Relu, any other unary op) read
  dequantized tensors and are followed by ``QuantizeLinear -> DequantizeLinear``; Flatten
  and Reshape keep their input's grid and, by default, are not requantized.

Every node has a unique readable name: for a layer ``name`` the main node is ``name``, the
others ``name_relu``, ``name_q``, ``name_dq``, ``name_w_dq`` (weights), ``name_b_dq``
(bias) ... ; a node's output tensor has the node's name. Initializers are ``name_w_q``,
``name_w_scale``, ``name_w_zp``, ``name_b_q``, ``name_b_scale``, ``name_b_zp``,
``name_scale``, ``name_zp``.

Scales are the caller's (floats) or ``"auto"``: with a calibration input (``calib``) the
builder runs the graph built so far with ``onnx.reference.ReferenceEvaluator`` and takes
``percentile(|y|, 99.5) / 127`` of the tensor to be quantized.

:func:`digits_onnx` converts the digits CNN of :mod:`.cnn` (``digits_cnn.npz``) into
``digits_cnn.onnx``: input ``x`` float (N, 1, 8, 8) (pixels / 16), output ``logits`` float
(N, 10). The ONNX file's scales are float32 (the npz holds float64 and the engine's
integer ``(mult, shift)``): an importer that recomputes ``(mult, shift)`` from the float32
scales may differ from the npz's by rounding, and ``QuantizeLinear`` rounds the input half
to even where :func:`.cnn.quantize_input` rounds half up (they agree on every 0..16 pixel).
Regenerate it with ``python -m doublesparse.sim.onnx_build [--npz P] [--out Q]``.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["Act", "QDQBuilder", "OPSET", "IR_VERSION", "reference_run", "digits_onnx",
           "save_digits_onnx", "main"]

#: Opset of the default domain.
OPSET = 21
#: IR version of the models (the one of opset 21; ONNX Runtime 1.30 and onnx 1.23 read it).
IR_VERSION = 10
#: Percentile of |y| that ``out_scale="auto"`` maps to 127.
AUTO_PERCENTILE = 99.5

_NP_TO_ONNX = {np.dtype(np.int8): TensorProto.INT8, np.dtype(np.uint8): TensorProto.UINT8}


@dataclass(frozen=True)
class Act:
    """A float tensor of the graph: ``name``; ``scale`` of the int8 grid it lies on (a
    DequantizeLinear output, or Flatten / Reshape of one), None for a raw float tensor."""

    name: str
    scale: float | None


def _pads(pad: int | tuple[int, ...]) -> list[int]:
    """``p`` -> [p, p, p, p]; ``(ph, pw)`` -> [ph, pw, ph, pw]; ``(t, l, b, r)`` as is (ONNX
    order: begin of each axis, then end of each axis)."""
    if isinstance(pad, int | np.integer):
        return [int(pad)] * 4
    p = [int(v) for v in pad]
    if len(p) == 2:
        return p + p
    if len(p) == 4:
        return p
    raise ValueError(f"pad {pad!r}: give an int, (ph, pw) or (top, left, bottom, right)")


def _pair(v: int | tuple[int, int]) -> list[int]:
    return [int(v)] * 2 if isinstance(v, int | np.integer) else [int(a) for a in v]


def reference_run(model: onnx.ModelProto, x: np.ndarray, intermediate: bool = False
                  ) -> dict[str, np.ndarray]:
    """Run ``model`` on ``x`` (its only input) with ``onnx.reference.ReferenceEvaluator``;
    returns ``{output name: value}``, or every tensor's value when ``intermediate``."""
    from onnx.reference import ReferenceEvaluator

    ev = ReferenceEvaluator(model)
    feeds = {model.graph.input[0].name: np.asarray(x, np.float32)}
    if intermediate:
        return dict(ev.run(None, feeds, intermediate=True))
    outs = ev.run(None, feeds)
    return {o.name: v for o, v in zip(model.graph.output, outs, strict=True)}


class QDQBuilder:
    """Append QDQ layers to a graph; see the module docstring for the form.

    ``input_shape``: the float input's shape (a str for a symbolic dimension, e.g. "N");
    ``input_scale``: the scale of the graph input's QuantizeLinear; ``calib``: a float input
    used to evaluate the graph for ``out_scale="auto"``; ``act_dtype`` / ``act_zero_point``:
    the activations' quantized type and zero point (int8 and 0 for anything the importer
    takes; other values only to build models it must refuse).

    ``b.current`` is the activation the next layer reads; every layer method returns its
    output :class:`Act` and makes it current; ``b.use(act)`` makes an earlier one current
    (for branches; :meth:`add` takes the other operand as an :class:`Act`). A method that
    raises ``ValueError`` may leave part of its nodes behind: build the model again.

    ``out_scale`` of an engine layer: a float, ``"auto"`` (calibrated on ``calib``) or None
    (raw float output: nothing may follow); of a host op: a float, ``"auto"`` or ``"same"``
    (the input's scale)."""

    def __init__(self, input_name: str = "x", input_shape: tuple = ("N", 1, 8, 8),
                 input_scale: float = 1.0 / 127.0, *, calib: np.ndarray | None = None,
                 act_dtype: type = np.int8, act_zero_point: int = 0,
                 graph_name: str = "qdq_model"):
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.graph_name = graph_name
        self.calib = None if calib is None else np.asarray(calib, np.float32)
        self.act_dtype = np.dtype(act_dtype)
        self.act_zero_point = int(act_zero_point)
        self._names: set[str] = {input_name}
        self._done = False
        self.input = helper.make_tensor_value_info(input_name, TensorProto.FLOAT,
                                                   list(input_shape))
        self.current = self._qdq(input_name, Act(input_name, None), float(input_scale))

    # -- plumbing -------------------------------------------------------------------------
    def _fresh(self, name: str) -> str:
        if name in self._names:
            raise ValueError(f"name {name!r} is already used in this graph")
        self._names.add(name)
        return name

    def _init(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(value), self._fresh(name)))
        return name

    def _node(self, op: str, name: str, inputs: list[str], **attrs) -> str:
        """Append node ``name``; its single output tensor is also called ``name``."""
        if self._done:
            raise ValueError(f"node {name!r} after a raw float output (must be the last op)")
        self.nodes.append(helper.make_node(op, inputs, [self._fresh(name)], name=name,
                                           **attrs))
        return name

    def _check_in(self, what: str) -> Act:
        if self._done:
            raise ValueError(f"{what}: after a raw float output (must be the last op)")
        if self.current.scale is None:
            raise ValueError(f"{what}: its input {self.current.name!r} is not quantized")
        return self.current

    def _qdq(self, name: str, src: Act, scale: float) -> Act:
        """``QuantizeLinear -> DequantizeLinear`` of ``src`` with ``scale`` (activation)."""
        if not (np.isfinite(scale) and scale > 0):
            raise ValueError(f"{name}: scale {scale} must be positive and finite")
        s = self._init(f"{name}_scale", np.array(scale, np.float32))
        z = self._init(f"{name}_zp", np.array(self.act_zero_point, self.act_dtype))
        q = self._node("QuantizeLinear", f"{name}_q", [src.name, s, z])
        dq = self._node("DequantizeLinear", f"{name}_dq", [q, s, z])
        self.current = Act(dq, float(np.float32(scale)))
        return self.current

    def _relu_finish(self, name: str, y: str, relu: bool, out_scale: float | str | None
                     ) -> Act:
        """An optional ``Relu`` (node ``name_relu``) on ``y``, then :meth:`_finish`."""
        if relu:
            y = self._node("Relu", f"{name}_relu", [y])
        return self._finish(name, y, out_scale, None)

    def _finish(self, name: str, y: str, out_scale: float | str | None, same: float | None
                ) -> Act:
        """Requantize float tensor ``y`` of layer ``name`` (or leave it raw when
        ``out_scale`` is None); ``"same"`` is ``same``, ``"auto"`` is calibrated."""
        if out_scale is None:
            self.current = Act(y, None)
            self._done = True
            return self.current
        if out_scale == "same":
            if same is None:
                raise ValueError(f"{name}: out_scale 'same' needs a quantized input")
            out_scale = same
        elif out_scale == "auto":
            out_scale = self.auto_scale(y)
        return self._qdq(name, Act(y, None), float(out_scale))

    def _weights(self, name: str, w: np.ndarray, w_scale, axis: int, float_weights: bool
                 ) -> tuple[str, np.ndarray]:
        """Weights ``w`` (int8) as a dequantized tensor; returns its name and the float32
        scale (scalar or (K,))."""
        w = np.asarray(w)
        if w.dtype != np.int8:
            raise ValueError(f"{name}: weights must be int8 (got {w.dtype})")
        ws = np.asarray(w_scale, np.float32)
        if ws.ndim not in (0, 1) or (ws.ndim == 1 and ws.shape[0] != w.shape[axis]):
            raise ValueError(f"{name}: weight scale shape {ws.shape}; expected a scalar or "
                             f"({w.shape[axis]},)")
        if not np.all(ws > 0):
            raise ValueError(f"{name}: weight scales must be positive")
        ax = {"axis": axis} if ws.ndim == 1 else {}
        s = self._init(f"{name}_w_scale", ws)
        z = self._init(f"{name}_w_zp", np.zeros(ws.shape, np.int8))
        if float_weights:
            bshape = [1] * w.ndim
            if ws.ndim:
                bshape[axis] = -1
            wf = (w.astype(np.float32) * ws.reshape(bshape)).astype(np.float32)
            src = self._init(f"{name}_w", wf)
            src = self._node("QuantizeLinear", f"{name}_w_q", [src, s, z], **ax)
        else:
            src = self._init(f"{name}_w_q", w)
        return self._node("DequantizeLinear", f"{name}_w_dq", [src, s, z], **ax), ws

    def _bias(self, name: str, bias: np.ndarray, s_in: float, ws: np.ndarray, k: int) -> str:
        b = np.asarray(bias)
        if b.dtype != np.int32 or b.shape != (k,):
            raise ValueError(f"{name}: bias must be int32 ({k},) (got {b.dtype} {b.shape})")
        bs = (np.float32(s_in) * ws).astype(np.float32)
        ax = {"axis": 0} if bs.ndim == 1 else {}
        q = self._init(f"{name}_b_q", b)
        s = self._init(f"{name}_b_scale", bs)
        z = self._init(f"{name}_b_zp", np.zeros(bs.shape, np.int32))
        return self._node("DequantizeLinear", f"{name}_b_dq", [q, s, z], **ax)

    def _graph(self, outputs: list[str]) -> onnx.GraphProto:
        outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs]
        return helper.make_graph(self.nodes, self.graph_name, [self.input], outs,
                                 initializer=self.inits)

    def _make(self, graph: onnx.GraphProto) -> onnx.ModelProto:
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="doublesparse.sim.onnx_build")
        m.ir_version = IR_VERSION
        return m

    # -- evaluation -----------------------------------------------------------------------
    def evaluate(self, name: str, x: np.ndarray | None = None) -> np.ndarray:
        """The value of tensor ``name`` of the graph so far on ``x`` (default ``calib``)."""
        x = self.calib if x is None else x
        if x is None:
            raise ValueError("evaluate / out_scale='auto' need a calibration input (calib)")
        return reference_run(self._make(self._graph([name])), x)[name]

    def auto_scale(self, name: str) -> float:
        """``percentile(|y|, 99.5) / 127`` of tensor ``name`` on the calibration input (the
        largest |y| if that is 0, and 1 if y is all zero)."""
        y = np.abs(self.evaluate(name)).astype(np.float64)
        top = float(np.percentile(y, AUTO_PERCENTILE)) or float(y.max()) or 127.0
        return top / 127.0

    def use(self, act: Act) -> Act:
        """Make ``act`` (an earlier layer's output) the current activation."""
        self.current = act
        return act

    # -- engine layers --------------------------------------------------------------------
    def conv(self, name: str, w: np.ndarray, w_scale, bias: np.ndarray | None = None,
             stride: int | tuple[int, int] = 1, pad: int | tuple[int, ...] = 0,
             relu: bool = True, out_scale: float | str | None = "auto", *,
             float_weights: bool = False, group: int = 1,
             dilation: int | tuple[int, int] = 1) -> Act:
        """``Conv`` with int8 weights ``w`` (K, C/group, R, S), weight scale (scalar or
        (K,)), optional int32 bias (K,), ``pads`` from ``pad`` (int, (ph, pw) or (t, l, b,
        r)), optional ``Relu``, then Q -> DQ with ``out_scale`` (None: raw float output)."""
        a = self._check_in(name)
        w = np.asarray(w)
        wdq, ws = self._weights(name, w, w_scale, 0, float_weights)
        ins = [a.name, wdq]
        if bias is not None:
            ins.append(self._bias(name, bias, a.scale, ws, w.shape[0]))
        attrs = {"kernel_shape": list(w.shape[2:]), "strides": _pair(stride),
                 "pads": _pads(pad)}
        if group != 1:
            attrs["group"] = int(group)
        if dilation != 1:
            attrs["dilations"] = _pair(dilation)
        y = self._node("Conv", name, ins, **attrs)
        return self._relu_finish(name, y, relu, out_scale)

    def gemm(self, name: str, w: np.ndarray, w_scale, bias: np.ndarray | None = None,
             relu: bool = False, out_scale: float | str | None = None, *,
             float_weights: bool = False) -> Act:
        """``Gemm(A, DQ(w), DQ(bias), transB=1)`` on the current (N, F) activation; ``w``
        int8 (out, in), scale scalar or (out,) (``axis=0``); optional ``Relu``; Q -> DQ
        with ``out_scale`` or (default) a raw float output."""
        a = self._check_in(name)
        w = np.asarray(w)
        wdq, ws = self._weights(name, w, w_scale, 0, float_weights)
        ins = [a.name, wdq]
        if bias is not None:
            ins.append(self._bias(name, bias, a.scale, ws, w.shape[0]))
        y = self._node("Gemm", name, ins, transB=1)
        return self._relu_finish(name, y, relu, out_scale)

    def matmul(self, name: str, w: np.ndarray, w_scale, bias: np.ndarray | None = None,
               relu: bool = False, out_scale: float | str | None = None, *,
               float_weights: bool = False) -> Act:
        """``MatMul(A, DQ(w))`` with ``w`` int8 (in, out), scale scalar or (out,)
        (``axis=1``); with a bias, ``Add`` (node ``name_add``) of ``DQ(bias)``; optional
        ``Relu``; Q -> DQ with ``out_scale`` or (default) a raw float output."""
        a = self._check_in(name)
        w = np.asarray(w)
        wdq, ws = self._weights(name, w, w_scale, 1, float_weights)
        y = self._node("MatMul", name, [a.name, wdq])
        if bias is not None:
            y = self._node("Add", f"{name}_add",
                           [y, self._bias(name, bias, a.scale, ws, w.shape[1])])
        return self._relu_finish(name, y, relu, out_scale)

    # -- host ops -------------------------------------------------------------------------
    def maxpool(self, name: str, kernel: int | tuple[int, int], stride=None,
                pad: int | tuple[int, ...] = 0, out_scale: float | str = "same") -> Act:
        """``MaxPool`` (stride defaults to the kernel), then Q -> DQ (same scale)."""
        a = self._check_in(name)
        y = self._node("MaxPool", name, [a.name], kernel_shape=_pair(kernel),
                       strides=_pair(kernel if stride is None else stride), pads=_pads(pad))
        return self._finish(name, y, out_scale, a.scale)

    def avgpool(self, name: str, kernel: int | tuple[int, int], stride=None,
                pad: int | tuple[int, ...] = 0, out_scale: float | str = "same") -> Act:
        """``AveragePool`` (``count_include_pad=0``; stride defaults to the kernel), then
        Q -> DQ (default: the input's scale)."""
        a = self._check_in(name)
        y = self._node("AveragePool", name, [a.name], kernel_shape=_pair(kernel),
                       strides=_pair(kernel if stride is None else stride), pads=_pads(pad),
                       count_include_pad=0)
        return self._finish(name, y, out_scale, a.scale)

    def global_avgpool(self, name: str, out_scale: float | str = "same") -> Act:
        """``GlobalAveragePool``, then Q -> DQ (default: the input's scale)."""
        a = self._check_in(name)
        return self._finish(name, self._node("GlobalAveragePool", name, [a.name]), out_scale,
                            a.scale)

    def flatten(self, name: str, requant: bool = False) -> Act:
        """``Flatten(axis=1)``; keeps the input's grid (Q -> DQ only when ``requant``)."""
        a = self._check_in(name)
        y = self._node("Flatten", name, [a.name], axis=1)
        if requant:
            return self._qdq(name, Act(y, None), a.scale)
        self.current = Act(y, a.scale)
        return self.current

    def reshape(self, name: str, shape: tuple[int, ...], requant: bool = False) -> Act:
        """``Reshape`` to ``shape`` (an int64 initializer ``name_shape``; 0 and -1 as in
        ONNX); keeps the input's grid (Q -> DQ only when ``requant``)."""
        a = self._check_in(name)
        s = self._init(f"{name}_shape", np.asarray(shape, np.int64))
        y = self._node("Reshape", name, [a.name, s])
        if requant:
            return self._qdq(name, Act(y, None), a.scale)
        self.current = Act(y, a.scale)
        return self.current

    def add(self, name: str, other: Act, relu: bool = False,
            out_scale: float | str = "auto") -> Act:
        """``Add(current, other)`` of two dequantized activations (their scales may
        differ), optional standalone ``Relu`` (node ``name_relu``), then Q -> DQ."""
        a = self._check_in(name)
        if other.scale is None:
            raise ValueError(f"{name}: its input {other.name!r} is not quantized")
        y = self._node("Add", name, [a.name, other.name])
        return self._relu_finish(name, y, relu, out_scale)

    def unary(self, name: str, op: str, out_scale: float | str = "auto", **attrs) -> Act:
        """Any one-input operator ``op`` (e.g. ``Relu``, ``Sigmoid``) on the current
        activation, then Q -> DQ."""
        a = self._check_in(name)
        return self._finish(name, self._node(op, name, [a.name], **attrs), out_scale, a.scale)

    # -- the model ------------------------------------------------------------------------
    def model(self, output_name: str | None = None, check: bool = True) -> onnx.ModelProto:
        """The model with the current activation as its output (renamed ``output_name`` if
        given), its shape inferred; checked with ``check_model(full_check=True)``."""
        out = self.current.name
        if output_name is not None and output_name != out:
            self._fresh(output_name)
            for n in self.nodes:
                for seq in (n.input, n.output):
                    for i, t in enumerate(seq):
                        if t == out:
                            seq[i] = output_name
            out = output_name
            self.current = Act(out, self.current.scale)
        m = self._make(self._graph([out]))
        inferred = onnx.shape_inference.infer_shapes(m, strict_mode=True)
        m.graph.ClearField("output")
        m.graph.output.extend(inferred.graph.output)
        if check:
            onnx.checker.check_model(m, full_check=True)
        return m


# -- the digits CNN ------------------------------------------------------------------------
def digits_onnx(net) -> onnx.ModelProto:
    """The digits :class:`~.cnn.Network` as a QDQ model: input ``x`` float (N, 1, 8, 8)
    (pixels / 16), ``Q(1/127)``; conv1..conv3 with per-channel int8 weights, ``Relu`` and
    ``Q(act_scales[i]) -> DQ``; ``Flatten``; ``Gemm`` fc (10, 512), ``transB=1``, no bias,
    raw float output ``logits`` (N, 10). Scales are stored as float32."""
    from .cnn import LAYERS

    b = QDQBuilder("x", ("N", 1, 8, 8), net.input_scale, graph_name="digits_cnn")
    for i, L in enumerate(LAYERS):
        q, ws = net.qweights[i], net.weight_scales[i]
        if L["raw"]:
            b.flatten(f"{L['name']}_flatten")
            b.gemm(L["name"], q.reshape(L["K"], -1), ws, relu=L["relu"], out_scale=None)
        else:
            b.conv(L["name"], q, ws, stride=L["stride"], pad=L["pad"], relu=L["relu"],
                   out_scale=net.act_scales[i])
    m = b.model("logits")
    m.doc_string = ("Pruned int8 CNN for scikit-learn's 8x8 digits (doublesparse "
                    "sim/digits_cnn.npz); input pixels / 16, output logits.")
    return m


def save_digits_onnx(net, path: Path | str) -> Path:
    """Write :func:`digits_onnx` of ``net`` to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(digits_onnx(net), path)
    return path


def main(argv: list[str] | None = None) -> int:
    """Regenerate ``digits_cnn.onnx`` from ``digits_cnn.npz``."""
    from .cnn import DEFAULT_PATH, load_network

    p = argparse.ArgumentParser(prog="python -m doublesparse.sim.onnx_build",
                                description="Write the digits CNN (npz) as a QDQ ONNX model.")
    p.add_argument("--npz", type=Path, default=DEFAULT_PATH)
    p.add_argument("--out", type=Path, default=None,
                   help="default: the npz's path with suffix .onnx")
    a = p.parse_args(argv)
    path = save_digits_onnx(load_network(a.npz), a.out or a.npz.with_suffix(".onnx"))
    print(f"wrote {path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
