"""Quantized ONNX models (QDQ form) as engine layers and host steps.

:func:`import_model` reads a model whose tensors are quantized with QuantizeLinear /
DequantizeLinear pairs (int8, zero point 0; per-tensor activation scales; per-tensor or
per-output-channel weight scales) and turns it into a :class:`Program`: a list of steps in
the graph's order, each an :class:`EngineLayer` (runs on the engine) or a
:class:`HostStep` (runs on the host). :func:`run_program` runs a program on a batch of
inputs with any engine (the golden model by default; ``scripts/run_net.py`` passes the
RTL).

Mapping (``docs/onnx.md`` has the user's view):

* ``Conv`` (group 1, dilation 1, kernel up to 7 x 7, equal strides 1 or 2, the same pad on
  every side, optional bias), ``Gemm`` (alpha = beta = 1, transA = 0) and ``MatMul`` with
  a constant int8 right operand (as 1 x 1 convolutions on a (F, 1, 1) activation; a
  ``MatMul`` followed by ``Add`` of a constant takes that constant as its bias) become
  engine layers. Their input must be a dequantized int8 tensor (a DequantizeLinear output,
  possibly through Flatten / Reshape / MaxPool / Identity, which keep the values on the
  same int8 grid), their weights constant int8 (an int8 initializer through
  DequantizeLinear, or a float initializer through QuantizeLinear and DequantizeLinear);
* the accumulator, plus the bias, becomes int8 when the layer's output (through an
  optional ``Relu``, folded into the requantizer) goes only to a ``QuantizeLinear``: the
  engine computes ``clamp(relu?(((acc + bias[k]) * mult[k] + 2**(shift[k]-1)) >>
  shift[k]))`` with ``mult[k] / 2**shift[k] ~ s_in * s_w[k] / s_out``
  (``sim.conv.requant_params``: relative error at most 2**-15, i.e. under 0.004 LSB on an
  int8 result, then round half up where QuantizeLinear rounds half to even). Otherwise the
  layer runs raw (int32 ``acc + bias``) and the host multiplies by ``s_in * s_w[k]``;
* a bias is an int32 constant through DequantizeLinear with scale ``s_in * s_w`` (taken as
  it is) or any other constant (rounded half to even to that scale: at most half an
  accumulator LSB);
* ``QuantizeLinear`` of a computed tensor, ``DequantizeLinear`` of an activation,
  ``MaxPool``, ``AveragePool``, ``GlobalAveragePool``, ``Flatten``, ``Reshape``, ``Add``,
  ``Relu`` and ``Identity`` run on the host in float32, as the ONNX reference does;
* anything else is refused with :class:`OnnxImportError` naming the node, its operator and
  why.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .conv import add_bias, conv2d_golden, requant_params, requantize

__all__ = ["OnnxImportError", "EngineLayer", "HostStep", "Program", "import_model",
           "run_program", "golden_engine", "HOST_OPS", "MAX_KERNEL"]

#: Largest kernel side the importer accepts.
MAX_KERNEL = 7
#: Operators that run on the host.
HOST_OPS = ("QuantizeLinear", "DequantizeLinear", "MaxPool", "AveragePool",
            "GlobalAveragePool", "Flatten", "Reshape", "Add", "Relu", "Identity")
_ENGINE_OPS = ("Conv", "Gemm", "MatMul")
#: host ops whose output stays on its input's int8 grid (same scale, exact values)
_GRID_OPS = ("Flatten", "Reshape", "MaxPool", "Identity")


class OnnxImportError(ValueError):
    """A model (or an input) the importer cannot map; the message names the node, its
    operator and why."""


@dataclass
class EngineLayer:
    """One engine job per image: ``w`` (K, C, R, S) int8 on the int8 tensor ``inp``.

    ``out`` is an int8 tensor of scale ``out_scale`` (requantized with ``requant``) or,
    when ``requant`` is None, a float tensor ``(acc + bias) * s_in * w_scale[k]``.
    ``fc``: the input is (N, F) and runs as (F, 1, 1); the output is (N, K)."""

    name: str
    op: str
    inp: str
    out: str
    w: np.ndarray
    bias: np.ndarray | None
    stride: int
    pad: int
    relu: bool
    requant: tuple[np.ndarray, np.ndarray] | None
    in_scale: float
    w_scale: np.ndarray
    out_scale: float | None
    fc: bool
    nodes: list[str] = field(default_factory=list)   # the ONNX nodes it stands for

    @property
    def raw(self) -> bool:
        return self.requant is None

    def golden(self, a: np.ndarray, acc_width: int = 32) -> np.ndarray:
        """The engine's result for one image ``a`` (C, H, W) int8: int8 (K, Ho, Wo), or
        int32 acc + bias when raw (the golden model of ``sim/conv.py``)."""
        acc = add_bias(conv2d_golden(self.w.astype(np.int64), a.astype(np.int64),
                                     self.stride, self.pad), self.bias, acc_width)
        if self.raw:
            return acc.astype(np.int32)
        return requantize(acc, *self.requant, relu=self.relu)


@dataclass
class HostStep:
    """A step on the host: ``op`` on float tensors ``inputs`` (or, for QuantizeLinear, to
    int8 with ``scale``; for DequantizeLinear, from int8)."""

    name: str
    op: str
    inputs: list[str]
    out: str
    attrs: dict
    scale: float | None = None


@dataclass
class Program:
    """An imported model: its input, outputs and steps; ``grid`` maps each float tensor
    that holds int8 values times a scale to that scale; ``lsb`` maps every float tensor
    to the unit its differences from the reference are reported in."""

    model: object
    input_name: str
    input_shape: list                 # dims (int or None for symbolic)
    outputs: list[str]
    steps: list
    grid: dict[str, float]
    lsb: dict[str, np.ndarray]

    @property
    def layers(self) -> list[EngineLayer]:
        return [s for s in self.steps if isinstance(s, EngineLayer)]


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _desc(node) -> str:
    return f"{node.op_type} '{node.name or node.output[0]}'"


class _Importer:
    def __init__(self, model):
        from onnx import numpy_helper

        self.model = model
        g = model.graph
        self.g = g
        self.const: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i)
                                             for i in g.initializer}
        # constant int tensors with their scale: name -> (ints, scale array, axis)
        self.qconst: dict[str, tuple[np.ndarray, np.ndarray, int]] = {}
        self.qact: dict[str, float] = {}       # int8 activation tensors: scale
        self.grid: dict[str, float] = {}       # float tensors on an int8 grid: scale
        self.lsb: dict[str, np.ndarray] = {}
        self.steps: list = []
        self.fused: set[int] = set()
        self.consumers: dict[str, list[int]] = {}
        for i, n in enumerate(g.node):
            for t in n.input:
                self.consumers.setdefault(t, []).append(i)
        self.outputs = [o.name for o in g.output]

    # -- helpers --------------------------------------------------------------------------
    def fail(self, node, why: str):
        raise OnnxImportError(f"{_desc(node)}: {why}")

    def scalar_scale(self, node, name: str) -> float:
        s = self.const.get(name)
        if s is None:
            self.fail(node, f"scale '{name}' is not a constant")
        if s.size != 1:
            self.fail(node, f"activation scale '{name}' has {s.size} values; only a "
                      f"per-tensor scale is supported for activations")
        v = float(s.reshape(-1)[0])
        if not np.isfinite(v) or v <= 0:
            self.fail(node, f"scale {v} is not a positive finite number")
        return v

    def check_zero_point(self, node, want_dtype=np.int8):
        if len(node.input) < 3 or not node.input[2]:
            if node.op_type == "QuantizeLinear":
                self.fail(node, "no zero point: the output would be uint8; only int8 with "
                          "zero point 0 is supported")
            return
        zp = self.const.get(node.input[2])
        if zp is None:
            self.fail(node, f"zero point '{node.input[2]}' is not a constant")
        if zp.dtype != want_dtype:
            self.fail(node, f"zero point type {zp.dtype} is not supported (only "
                      f"{np.dtype(want_dtype).name} with zero point 0)")
        if np.any(zp != 0):
            self.fail(node, f"zero point {int(zp.reshape(-1)[np.flatnonzero(zp)[0]])} is "
                      f"not supported (only 0)")

    def only_consumer(self, name: str) -> int | None:
        c = self.consumers.get(name, [])
        if len(c) == 1 and name not in self.outputs:
            return c[0]
        return None

    # -- constants ------------------------------------------------------------------------
    def quantize_const(self, i: int, node) -> bool:
        """QuantizeLinear / DequantizeLinear of a constant: fold it."""
        src = node.input[0]
        a = _attrs(node)
        if node.op_type == "QuantizeLinear" and src in self.const:
            scale = self.const.get(node.input[1])
            if scale is None:
                self.fail(node, f"scale '{node.input[1]}' is not a constant")
            self.check_zero_point(node)
            axis = a.get("axis", 1)
            x = self.const[src].astype(np.float32)
            s = _bcast(scale.astype(np.float32), x.ndim, axis)
            q = np.clip(np.rint(x / s), -128, 127).astype(np.int8)
            self.const[node.output[0]] = q
            return True
        if node.op_type == "DequantizeLinear" and src in self.const:
            q = self.const[src]
            scale = self.const.get(node.input[1])
            if scale is None:
                self.fail(node, f"scale '{node.input[1]}' is not a constant")
            if q.dtype not in (np.int8, np.int32):
                self.fail(node, f"constant '{src}' is {q.dtype}; weights must be int8 and "
                          f"biases int32")
            self.check_zero_point(node, q.dtype.type)
            axis = a.get("axis", 1)
            if axis < 0:
                axis += q.ndim
            self.qconst[node.output[0]] = (q, scale.astype(np.float64).reshape(-1), axis)
            s = _bcast(scale.astype(np.float32), q.ndim, axis)
            self.const[node.output[0]] = q.astype(np.float32) * s
            return True
        return False

    def weight(self, node, name: str, out_axis: int, K_hint: int | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """Constant int8 weights and their scales per output channel (axis ``out_axis``)."""
        if name not in self.qconst:
            why = ("a float constant: weights must be quantized (an int8 initializer "
                   "through DequantizeLinear)" if name in self.const
                   else "not a constant (only constant weights are supported)")
            self.fail(node, f"weight '{name}' is {why}")
        q, scale, axis = self.qconst[name]
        if q.dtype != np.int8:
            self.fail(node, f"weight '{name}' is {q.dtype}; only int8 is supported")
        K = q.shape[out_axis]
        if scale.size == 1:
            return q, np.full(K, float(scale[0]))
        if axis != out_axis or scale.size != K:
            self.fail(node, f"weight '{name}' has {scale.size} scales along axis {axis}; "
                      f"per-channel scales must run along the output channels "
                      f"(axis {out_axis}, {K} of them)")
        return q, scale.copy()

    def bias(self, node, name: str, in_scale: float, w_scale: np.ndarray) -> np.ndarray:
        K = len(w_scale)
        acc_scale = in_scale * w_scale
        if name in self.qconst and self.qconst[name][0].dtype == np.int32:
            q, scale, _ = self.qconst[name]
            if q.size != K:
                self.fail(node, f"bias '{name}' has {q.size} values, the layer {K} outputs")
            s = np.broadcast_to(scale, (K,))
            if np.allclose(s, acc_scale, rtol=1e-6, atol=0):
                return q.reshape(K).astype(np.int64)
        if name not in self.const:
            self.fail(node, f"bias '{name}' is not a constant")
        b = np.asarray(self.const[name], np.float64).reshape(-1)
        if b.size != K:
            self.fail(node, f"bias '{name}' has {b.size} values, the layer {K} outputs")
        q = np.rint(b / acc_scale)
        if np.any(np.abs(q) > 2**31 - 1):
            k = int(np.argmax(np.abs(q)))
            self.fail(node, f"bias {b[k]} of channel {k} does not fit int32 at the "
                      f"accumulator's scale {acc_scale[k]}")
        return q.astype(np.int64)

    # -- the walk -------------------------------------------------------------------------
    def run(self) -> Program:
        g = self.g
        if len(g.input) - sum(i.name in self.const for i in g.input) != 1:
            raise OnnxImportError(f"the model has {len(g.input)} inputs; one is supported")
        inp = next(i for i in g.input if i.name not in self.const)
        dims = [d.dim_value if d.HasField("dim_value") else None
                for d in inp.type.tensor_type.shape.dim]
        for op in self.model.opset_import:
            if op.domain not in ("", "ai.onnx"):
                raise OnnxImportError(f"operator set '{op.domain}' is not supported "
                                      f"(only the standard ONNX operators)")
        self.fold_constants()
        for i, node in enumerate(g.node):
            if i in self.fused:
                continue
            if node.domain not in ("", "ai.onnx"):
                self.fail(node, f"operator {node.domain}.{node.op_type} is not supported "
                          f"(only standard ONNX operators)")
            op = node.op_type
            if all(t in self.const for t in node.input if t) and op in ("Reshape", "Identity",
                                                                           "Flatten"):
                self.fail(node, "computes on constants only (fold it before export)")
            if op in _ENGINE_OPS:
                self.engine(i, node)
            elif op in HOST_OPS:
                self.host(node)
            else:
                self.fail(node, f"operator {op} is not supported (engine: "
                          f"{', '.join(_ENGINE_OPS)}; host: {', '.join(HOST_OPS)})")
        for o in self.outputs:
            if o not in self.lsb and o not in self.qact:
                raise OnnxImportError(f"output '{o}' is not computed by a supported path")
        return Program(self.model, inp.name, dims, self.outputs, self.steps, self.grid,
                       self.lsb)

    def fold_constants(self) -> None:
        """Constant nodes and QuantizeLinear / DequantizeLinear of constants, wherever
        they sit in the graph's order (a bias's DequantizeLinear may follow its layer)."""
        from onnx import numpy_helper

        changed = True
        while changed:
            changed = False
            for i, node in enumerate(self.g.node):
                if i in self.fused or node.domain not in ("", "ai.onnx"):
                    continue
                if node.op_type == "Constant":
                    a = next((x for x in node.attribute if x.name == "value"), None)
                    if a is None:
                        self.fail(node, "only a tensor 'value' is supported")
                    self.const[node.output[0]] = numpy_helper.to_array(a.t)
                elif not (node.op_type in ("QuantizeLinear", "DequantizeLinear")
                          and self.quantize_const(i, node)):
                    continue
                self.fused.add(i)
                changed = True

    def host(self, node) -> None:
        op, a = node.op_type, _attrs(node)
        ins = [t for t in node.input if t]
        if op == "QuantizeLinear":
            src = ins[0]
            self.check_zero_point(node)
            scale = self.scalar_scale(node, ins[1])
            self.steps.append(HostStep(node.name, op, [src], node.output[0], a, scale))
            self.qact[node.output[0]] = scale
            return
        if op == "DequantizeLinear":
            src = ins[0]
            if src not in self.qact:
                self.fail(node, f"input '{src}' is not an int8 activation made by "
                          f"QuantizeLinear")
            self.check_zero_point(node)
            scale = self.scalar_scale(node, ins[1])
            if not np.isclose(scale, self.qact[src], rtol=1e-7, atol=0):
                self.fail(node, f"scale {scale} differs from the QuantizeLinear's "
                          f"{self.qact[src]}")
            self.steps.append(HostStep(node.name, op, [src], node.output[0], a, scale))
            self.grid[node.output[0]] = scale
            self.lsb[node.output[0]] = np.array(scale)
            return
        data = [t for t in ins if t not in self.const]
        for t in data:
            if t not in self.lsb:
                self.fail(node, f"input '{t}' is not computed by a supported path")
        if op in ("MaxPool", "AveragePool"):
            _pool_attrs(self, node, a)
        if op == "Reshape":
            if len(ins) < 2 or ins[1] not in self.const:
                self.fail(node, "the target shape must be a constant")
            a = dict(a, shape=[int(v) for v in self.const[ins[1]]])
            if a.get("allowzero", 0):
                self.fail(node, "allowzero = 1 is not supported")
        if op == "Add":
            consts = [t for t in ins if t in self.const]
            a = dict(a, const={t: self.const[t].astype(np.float32) for t in consts})
        if op not in ("Add",) and len(data) != 1:
            self.fail(node, f"expects one computed input, has {len(data)}")
        out = node.output[0]
        self.steps.append(HostStep(node.name, op, ins if op == "Add" else data, out, a))
        self.lsb[out] = min((np.min(self.lsb[t]) for t in data), default=np.array(1.0))
        if op in _GRID_OPS and data[0] in self.grid:
            self.grid[out] = self.grid[data[0]]

    def engine(self, i: int, node) -> None:
        op, a = node.op_type, _attrs(node)
        x = node.input[0]
        if x not in self.grid:
            self.fail(node, f"input '{x}' is not a dequantized int8 activation (the model "
                      f"must be in QDQ form: QuantizeLinear then DequantizeLinear before "
                      f"each {op})")
        s_in = self.grid[x]
        bias_name = None
        fc = op != "Conv"
        stride, pad = 1, 0
        if op == "Conv":
            if a.get("group", 1) != 1:
                self.fail(node, f"group {a['group']} is not supported (only 1)")
            if any(d != 1 for d in a.get("dilations", [1, 1])):
                self.fail(node, f"dilations {list(a['dilations'])} are not supported "
                          f"(only 1)")
            w, ws = self.weight(node, node.input[1], 0)
            if w.ndim != 4:
                self.fail(node, f"weights of shape {w.shape}: only 2-D convolutions "
                          f"(K, C, R, S) are supported")
            R, S = w.shape[2:]
            if max(R, S) > MAX_KERNEL:
                self.fail(node, f"kernel {R}x{S} is larger than {MAX_KERNEL}x{MAX_KERNEL}")
            strides = list(a.get("strides", [1, 1]))
            if strides[0] != strides[1] or strides[0] not in (1, 2):
                self.fail(node, f"strides {strides} are not supported (1 or 2, the same "
                          f"on both axes)")
            stride = strides[0]
            pads = _conv_pads(self, node, a, R, S, stride)
            if len(set(pads)) != 1:
                self.fail(node, f"pads {pads} are not supported (the same pad on every "
                          f"side)")
            pad = pads[0]
            if len(node.input) > 2 and node.input[2]:
                bias_name = node.input[2]
        elif op == "Gemm":
            if a.get("transA", 0):
                self.fail(node, "transA = 1 is not supported")
            for k in ("alpha", "beta"):
                if a.get(k, 1.0) != 1.0:
                    self.fail(node, f"{k} = {a[k]} is not supported (only 1)")
            tb = a.get("transB", 0)
            w2, ws = self.weight(node, node.input[1], 0 if tb else 1)
            if w2.ndim != 2:
                self.fail(node, f"weights of shape {w2.shape}: expected 2 dimensions")
            w = (w2 if tb else w2.T)[:, :, None, None]
            if len(node.input) > 2 and node.input[2]:
                bias_name = node.input[2]
        else:  # MatMul
            w2, ws = self.weight(node, node.input[1], 1)
            if w2.ndim != 2:
                self.fail(node, f"weights of shape {w2.shape}: expected 2 dimensions")
            w = w2.T[:, :, None, None]
        w = np.ascontiguousarray(w)
        nodes = [node.name]
        y = node.output[0]
        # MatMul + Add(constant): the constant is the bias
        nxt = self.only_consumer(y)
        if op == "MatMul" and nxt is not None and self.g.node[nxt].op_type == "Add":
            add = self.g.node[nxt]
            other = [t for t in add.input if t != y]
            if len(other) == 1 and other[0] in self.const:
                bias_name = other[0]
                self.fused.add(nxt)
                nodes.append(add.name)
                y = add.output[0]
        bias = None if bias_name is None else self.bias(node, bias_name, s_in, ws)
        # optional Relu, then QuantizeLinear: requantized; otherwise raw
        relu, out, out_scale, requant = False, y, None, None
        chain, t = [], y
        nxt = self.only_consumer(t)
        if nxt is not None and self.g.node[nxt].op_type == "Relu":
            chain.append(nxt)
            t = self.g.node[nxt].output[0]
            nxt = self.only_consumer(t)
        if nxt is not None and self.g.node[nxt].op_type == "QuantizeLinear":
            qn = self.g.node[nxt]
            self.check_zero_point(qn)
            out_scale = self.scalar_scale(qn, qn.input[1])
            relu = bool(chain)
            chain.append(nxt)
            out = qn.output[0]
            try:
                requant = requant_params(s_in * ws / out_scale)
            except ValueError as e:
                self.fail(node, f"output scale {out_scale}: {e}")
            for c in chain:
                self.fused.add(c)
                nodes.append(self.g.node[c].name)
            self.qact[out] = out_scale
        else:
            self.lsb[out] = s_in * ws
        self.steps.append(EngineLayer(node.name or y, op, x, out, w, bias, stride, pad, relu,
                                      requant, s_in, ws, out_scale, fc, nodes))


def _bcast(scale: np.ndarray, ndim: int, axis: int) -> np.ndarray:
    if scale.size == 1:
        return scale.reshape(())
    shape = [1] * ndim
    shape[axis if axis >= 0 else axis + ndim] = scale.size
    return scale.reshape(shape)


def _conv_pads(imp: _Importer, node, a: dict, R: int, S: int, stride: int) -> list[int]:
    ap = a.get("auto_pad", b"NOTSET")
    ap = ap.decode() if isinstance(ap, bytes) else ap
    if ap in ("NOTSET", ""):
        return list(a.get("pads", [0, 0, 0, 0]))
    if ap == "VALID":
        return [0, 0, 0, 0]
    if stride == 1 and R % 2 and S % 2:          # SAME_* with odd kernels: symmetric
        return [R // 2, S // 2, R // 2, S // 2]
    imp.fail(node, f"auto_pad {ap} with a {R}x{S} kernel and stride {stride} is not "
             f"supported (give explicit symmetric pads)")
    return []


def _pool_attrs(imp: _Importer, node, a: dict) -> None:
    if a.get("ceil_mode", 0):
        imp.fail(node, "ceil_mode = 1 is not supported")
    if any(d != 1 for d in a.get("dilations", [1, 1])):
        imp.fail(node, "dilations are not supported")
    ap = a.get("auto_pad", b"NOTSET")
    ap = ap.decode() if isinstance(ap, bytes) else ap
    if ap not in ("NOTSET", "", "VALID"):
        imp.fail(node, f"auto_pad {ap} is not supported (give explicit pads)")
    if node.op_type == "MaxPool" and a.get("storage_order", 0):
        imp.fail(node, "storage_order = 1 is not supported")
    if len(a.get("kernel_shape", [])) != 2:
        imp.fail(node, "only 2-D pooling is supported")
    if len(node.output) > 1 and node.output[1]:
        imp.fail(node, "the Indices output is not supported")


def import_model(model) -> Program:
    """A quantized ONNX model (a path or an ``onnx.ModelProto``) as a :class:`Program`;
    raises :class:`OnnxImportError` naming the first node it cannot map."""
    import onnx

    if isinstance(model, (str, Path)):
        p = Path(model)
        if not p.is_file():
            raise OnnxImportError(f"{p}: model file not found")
        try:
            model = onnx.load(str(p))
        except Exception as e:  # protobuf decode errors come in many types
            raise OnnxImportError(f"{p}: not a readable ONNX model ({e})") from e
    return _Importer(model).run()


# -- running ----------------------------------------------------------------------------------
def _pool(x: np.ndarray, a: dict, op: str) -> np.ndarray:
    kh, kw = a["kernel_shape"]
    sh, sw = a.get("strides", [1, 1])
    t, l, b, r = a.get("pads", [0, 0, 0, 0])
    N, C, H, W = x.shape
    fill = -np.inf if op == "MaxPool" else np.nan
    xp = np.full((N, C, H + t + b, W + l + r), fill, np.float32)
    xp[:, :, t:t + H, l:l + W] = x
    Ho, Wo = (H + t + b - kh) // sh + 1, (W + l + r - kw) // sw + 1
    win = np.stack([xp[:, :, i:i + sh * Ho:sh, j:j + sw * Wo:sw]
                    for i in range(kh) for j in range(kw)], axis=-1)
    if op == "MaxPool":
        return win.max(-1).astype(np.float32)
    if a.get("count_include_pad", 0):
        win = np.where(np.isnan(win), np.float32(0), win)
        return win.mean(-1, dtype=np.float32).astype(np.float32)
    return np.nanmean(win, -1, dtype=np.float32).astype(np.float32)


def _reshape(x: np.ndarray, shape: list[int]) -> np.ndarray:
    shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return x.reshape(shape)


def _host(step: HostStep, env: dict) -> np.ndarray:
    op, a = step.op, step.attrs
    if op == "QuantizeLinear":
        x = env[step.inputs[0]].astype(np.float32)
        q = np.rint(x / np.float32(step.scale))
        return np.clip(q, -128, 127).astype(np.int8)
    if op == "DequantizeLinear":
        return env[step.inputs[0]].astype(np.float32) * np.float32(step.scale)
    ins = [a["const"][t] if op == "Add" and t in a["const"] else env[t]
           for t in step.inputs if t]
    x = ins[0]
    if op in ("MaxPool", "AveragePool"):
        return _pool(x, a, op)
    if op == "GlobalAveragePool":
        return x.mean(axis=(2, 3), keepdims=True, dtype=np.float32).astype(np.float32)
    if op == "Flatten":
        ax = a.get("axis", 1)
        return x.reshape(int(np.prod(x.shape[:ax])), -1)
    if op == "Reshape":
        return _reshape(x, a["shape"])
    if op == "Add":
        return (ins[0] + ins[1]).astype(np.float32)
    if op == "Relu":
        return np.maximum(x, np.float32(0))
    if op == "Identity":
        return x
    raise AssertionError(op)


def golden_engine(layer: EngineLayer, acts: list[np.ndarray]) -> list[np.ndarray]:
    """The golden model as the engine: one result per image."""
    return [layer.golden(a) for a in acts]


Engine = Callable[[EngineLayer, list[np.ndarray]], list[np.ndarray]]


def run_program(prog: Program, x: np.ndarray, engine: Engine = golden_engine
                ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Run ``prog`` on the float input ``x`` (with or without the batch axis).

    Returns ``(outputs, env)``: the model's outputs by name, and every tensor computed
    (int8 tensors as int8, float tensors as float32; an engine layer's int8 output and raw
    accumulators under its output name, the latter also as ``name + '#acc'``)."""
    x = np.asarray(x, np.float32)
    dims = prog.input_shape
    if x.ndim == len(dims) - 1:
        x = x[None]
    if x.ndim != len(dims) or any(d is not None and d != s and i > 0
                                  for i, (d, s) in enumerate(zip(dims, x.shape, strict=True))):
        raise OnnxImportError(f"input '{prog.input_name}' has shape {x.shape}; the model "
                              f"takes {['N' if d is None else d for d in dims]}")
    env: dict[str, np.ndarray] = {prog.input_name: x}
    ints: dict[str, np.ndarray] = {}      # int8 views of tensors on an int8 grid
    for step in prog.steps:
        if isinstance(step, HostStep):
            y = _host(step, env)
            env[step.out] = y
            if step.op == "QuantizeLinear":
                ints[step.out] = y
            elif step.op == "DequantizeLinear":
                ints[step.out] = env[step.inputs[0]]
            elif step.op in _GRID_OPS and step.inputs[0] in ints:
                q = ints[step.inputs[0]]
                ints[step.out] = (_host(step, {step.inputs[0]: q.astype(np.float32)})
                                  .astype(np.int8))
            continue
        q = ints[step.inp]
        N = q.shape[0]
        if step.fc:
            if q.ndim != 2:
                raise OnnxImportError(f"{step.op} '{step.name}': input '{step.inp}' has "
                                      f"shape {q.shape}; expected (N, features)")
            acts = [q[n].reshape(-1, 1, 1) for n in range(N)]
        else:
            if q.ndim != 4:
                raise OnnxImportError(f"{step.op} '{step.name}': input '{step.inp}' has "
                                      f"shape {q.shape}; expected (N, C, H, W)")
            acts = [q[n] for n in range(N)]
        if acts[0].shape[0] != step.w.shape[1]:
            raise OnnxImportError(f"{step.op} '{step.name}': input has {acts[0].shape[0]} "
                                  f"channels, the weights {step.w.shape[1]}")
        ys = np.stack(engine(step, acts))
        if step.fc:
            ys = ys.reshape(N, -1)
        if step.raw:
            env[step.out + "#acc"] = ys
            s = (np.float64(step.in_scale) * step.w_scale).reshape(
                (1, -1) + (1,) * (ys.ndim - 2))
            env[step.out] = (ys.astype(np.float64) * s).astype(np.float32)
        else:
            env[step.out] = ints[step.out] = ys.astype(np.int8)
    return {o: env[o] for o in prog.outputs}, env
