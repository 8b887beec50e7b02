"""A small pruned int8 CNN for scikit-learn's 8x8 digits, run the way the engine runs it.

Architecture (no biases: the engine has none; ReLU after every conv):

===== ============= ====== ======= ==== ======= ===================
layer C -> K        kernel stride pad  in      out
===== ============= ====== ======= ==== ======= ===================
conv1 1 -> 16       3x3    1       1    1x8x8   16x8x8
conv2 16 -> 32      3x3    2       1    16x8x8  32x4x4
conv3 32 -> 32      3x3    1       1    32x4x4  32x4x4
fc    512 -> 10     1x1    1       0    512x1x1 10x1x1 (raw int32)
===== ============= ====== ======= ==== ======= ===================

The fc layer flattens conv3's (K, H, W) output in C order to 512 channels and runs on the
engine as a 1x1 convolution with weights (10, 512, 1, 1) on activations (512, 1, 1).

Quantization (all scales are "float = int * scale"):

- input: pixel ``p`` in 0..16 -> ``q = floor(p * 127 / 16 + 1/2)`` in 0..127; the float
  model sees ``x = p / 16``, so the input scale is ``1 / 127``;
- weights: symmetric int8 per output channel, ``s_w[k] = max|W_k| / 127`` (an all-zero
  filter gets scale 1 and stays zero);
- conv layer outputs: one scale ``s_out`` per layer (calibrated on the training set); the
  engine turns the int32 accumulators into int8 with ``requantize(acc, mult, shift, relu)``
  of :mod:`.conv`, where ``mult[k] / 2**shift[k] ~ s_in * s_w[k] / s_out``;
- fc: raw int32 accumulators; ``logits = acc * fc_scale`` with ``fc_scale = s_in * s_w``.

The trained network lives in ``digits_cnn.npz`` next to this file (written by
``python -m doublesparse.scripts.train_digits``); it holds only plain arrays and a JSON
string, so ``np.load(..., allow_pickle=False)`` reads it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .conv import conv2d_golden, im2col, requantize

__all__ = ["LAYERS", "DEFAULT_PATH", "INPUT_SCALE", "Network", "NetworkError", "load_network",
           "save_network", "quantize_input", "float_forward", "int8_forward", "layer_job",
           "digits_split", "sparsity"]

LAYERS: list[dict] = [
    {"name": "conv1", "K": 16, "C": 1, "R": 3, "S": 3, "stride": 1, "pad": 1, "relu": True,
     "raw": False},
    {"name": "conv2", "K": 32, "C": 16, "R": 3, "S": 3, "stride": 2, "pad": 1, "relu": True,
     "raw": False},
    {"name": "conv3", "K": 32, "C": 32, "R": 3, "S": 3, "stride": 1, "pad": 1, "relu": True,
     "raw": False},
    {"name": "fc", "K": 10, "C": 512, "R": 1, "S": 1, "stride": 1, "pad": 0, "relu": False,
     "raw": True},
]

DEFAULT_PATH = Path(__file__).with_name("digits_cnn.npz")

#: Scale of the int8 input: float input ``p / 16`` ~ ``quantize_input(p) * INPUT_SCALE``.
INPUT_SCALE = 1.0 / 127.0

_FORMAT = 1


class NetworkError(ValueError):
    """The network file is missing or malformed; the message names the path."""


@dataclass
class Network:
    """A trained, pruned and quantized digits CNN (see the module docstring)."""

    weights: list[np.ndarray]                 # float32 (K, C, R, S); fc as (10, 512, 1, 1)
    qweights: list[np.ndarray]                # int8 (K, C, R, S)
    requant: list[tuple[np.ndarray, np.ndarray] | None]  # (mult, shift) int64 (K,); fc None
    input_scale: float                        # scale of the int8 input (1 / 127)
    weight_scales: list[np.ndarray]           # float64 (K,) per layer
    act_scales: list[float]                   # output scale of each conv layer (3 entries)
    fc_scale: np.ndarray                      # float64 (10,): logits = acc_fc * fc_scale
    test_idx: np.ndarray                      # int64 indices into load_digits()
    train_idx: np.ndarray
    meta: dict = field(default_factory=dict)  # seed, accuracies, sparsity, calibration ...


def sparsity(qweights: list[np.ndarray]) -> tuple[list[float], float]:
    """Fraction of zero weights per layer and overall."""
    per = [float(np.mean(w == 0)) for w in qweights]
    total = sum(int(np.sum(w == 0)) for w in qweights) / sum(w.size for w in qweights)
    return per, float(total)


def save_network(net: Network, path: Path | str = DEFAULT_PATH) -> Path:
    """Write ``net`` as a compressed npz of plain arrays (no pickled objects)."""
    path = Path(path)
    d: dict[str, np.ndarray] = {
        "format": np.array(_FORMAT, np.int64),
        "input_scale": np.array(net.input_scale, np.float64),
        "act_scales": np.asarray(net.act_scales, np.float64),
        "fc_scale": np.asarray(net.fc_scale, np.float64),
        "test_idx": np.asarray(net.test_idx, np.int64),
        "train_idx": np.asarray(net.train_idx, np.int64),
        "meta": np.array(json.dumps(net.meta, sort_keys=True)),
    }
    for i in range(len(LAYERS)):
        d[f"w{i}"] = np.asarray(net.weights[i], np.float32)
        d[f"q{i}"] = np.asarray(net.qweights[i], np.int8)
        d[f"ws{i}"] = np.asarray(net.weight_scales[i], np.float64)
        if net.requant[i] is not None:
            d[f"mult{i}"] = np.asarray(net.requant[i][0], np.int64)
            d[f"shift{i}"] = np.asarray(net.requant[i][1], np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **d)
    return path


def load_network(path: Path | str = DEFAULT_PATH) -> Network:
    """Read a network written by :func:`save_network`; raises :class:`NetworkError` naming
    ``path`` if the file is missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise NetworkError(f"{path}: network file not found (train it with "
                           f"python -m doublesparse.scripts.train_digits)")
    try:
        with np.load(path, allow_pickle=False) as z:
            f = {k: z[k] for k in z.files}
    except Exception as e:  # zip / npy errors come in many types
        raise NetworkError(f"{path}: not a readable npz file ({e})") from e

    def get(key: str) -> np.ndarray:
        if key not in f:
            raise NetworkError(f"{path}: malformed network file, missing array {key!r}")
        return f[key]

    if int(get("format")) != _FORMAT:
        raise NetworkError(f"{path}: network format {int(get('format'))}, expected {_FORMAT}")
    weights, qweights, wscales, requant = [], [], [], []
    for i, L in enumerate(LAYERS):
        shape = (L["K"], L["C"], L["R"], L["S"])
        w, q, ws = get(f"w{i}"), get(f"q{i}"), get(f"ws{i}")
        if w.shape != shape or q.shape != shape or q.dtype != np.int8 or ws.shape != shape[:1]:
            raise NetworkError(f"{path}: malformed layer {L['name']}: weights {w.shape}, "
                               f"int8 weights {q.shape} {q.dtype}, scales {ws.shape}; "
                               f"expected {shape} int8 and ({L['K']},)")
        weights.append(w.astype(np.float32))
        qweights.append(q)
        wscales.append(ws.astype(np.float64))
        if L["raw"]:
            requant.append(None)
        else:
            m, s = get(f"mult{i}").astype(np.int64), get(f"shift{i}").astype(np.int64)
            if m.shape != shape[:1] or s.shape != shape[:1]:
                raise NetworkError(f"{path}: malformed requant of {L['name']}: "
                                   f"{m.shape} / {s.shape}, expected ({L['K']},)")
            requant.append((m, s))
    act = get("act_scales").astype(np.float64)
    fc_scale = get("fc_scale").astype(np.float64)
    if act.shape != (len(LAYERS) - 1,) or fc_scale.shape != (LAYERS[-1]["K"],):
        raise NetworkError(f"{path}: malformed scales: act_scales {act.shape}, "
                           f"fc_scale {fc_scale.shape}")
    try:
        meta = json.loads(str(get("meta")))
    except json.JSONDecodeError as e:
        raise NetworkError(f"{path}: malformed metadata ({e})") from e
    return Network(weights, qweights, requant, float(get("input_scale")), wscales,
                   [float(v) for v in act], fc_scale, get("test_idx").astype(np.int64),
                   get("train_idx").astype(np.int64), meta)


def quantize_input(pixels: np.ndarray) -> np.ndarray:
    """8x8 digits pixels (0..16) -> int8 (1, 8, 8): ``floor(p * 127 / 16 + 1/2)``, 0..127.

    The float model's input is ``p / 16``, so the int8 input's scale is ``1 / 127``
    (:data:`INPUT_SCALE`)."""
    p = np.asarray(pixels)
    if p.shape != (8, 8) and p.shape != (1, 8, 8):
        raise ValueError(f"pixels have shape {p.shape}; expected (8, 8)")
    if p.size and (p.min() < 0 or p.max() > 16):
        raise ValueError(f"pixels must be 0..16 (got {p.min()}..{p.max()})")
    p = np.rint(p).astype(np.int64).reshape(1, 8, 8)
    return ((p * 127 + 8) // 16).astype(np.int8)


def _conv_float(x: np.ndarray, w: np.ndarray, stride: int, pad: int) -> np.ndarray:
    """Batched float conv: (N, C, H, W) x (K, C, R, S) -> (N, K, Ho, Wo)."""
    K, _, R, S = w.shape
    cols, Ho, Wo = im2col(x, R, S, stride, pad)
    return (w.reshape(K, -1) @ cols).reshape(x.shape[0], K, Ho, Wo)


def float_forward(net: Network, images_float: np.ndarray) -> np.ndarray:
    """Float logits (N, 10) of the pruned, fine-tuned float weights; images are
    ``pixels / 16`` with shape (N, 8, 8) or (N, 1, 8, 8)."""
    x = np.asarray(images_float, np.float32)
    x = x.reshape(x.shape[0], 1, 8, 8)
    for L, w in zip(LAYERS[:-1], net.weights[:-1], strict=True):
        x = np.maximum(_conv_float(x, w, L["stride"], L["pad"]), 0)
    return x.reshape(x.shape[0], -1) @ net.weights[-1].reshape(LAYERS[-1]["K"], -1).T


def int8_forward(net: Network, pixels: np.ndarray
                 ) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """One image through the engine's integer arithmetic (golden model).

    Returns ``(logits (10,) float, layer_inputs, acc_fc (10,) int32)``: ``layer_inputs[i]``
    is the int8 (C, H, W) activation tensor layer ``i`` reads (the fc layer's is (512, 1, 1)).
    Each conv layer is ``conv2d_golden`` then ``requantize(acc, mult, shift, relu=True)``;
    the fc layer's raw accumulators give ``logits = acc_fc * fc_scale``."""
    a = quantize_input(pixels)
    inputs: list[np.ndarray] = []
    for i, L in enumerate(LAYERS):
        if L["raw"]:
            a = a.reshape(-1, 1, 1)
        inputs.append(a)
        acc = conv2d_golden(net.qweights[i], a, L["stride"], L["pad"])
        if L["raw"]:
            acc_fc = acc.reshape(-1).astype(np.int32)
            return acc_fc * net.fc_scale, inputs, acc_fc
        a = requantize(acc, *net.requant[i], relu=L["relu"])
    raise AssertionError("LAYERS has no raw output layer")


def layer_job(net: Network, i: int, a_int8: np.ndarray) -> dict:
    """Layer ``i`` with input ``a_int8`` as keyword arguments for the engine runner
    (``scripts/layer.py``'s ``run_layer(cfg=..., **layer_job(...))``): ``w``, ``a``,
    ``stride``, ``pad``, ``requant`` ((mult, shift) or None for the raw fc) and ``relu``.
    The fc layer accepts conv3's (32, 4, 4) output and flattens it to (512, 1, 1)."""
    L = LAYERS[i]
    a = np.asarray(a_int8)
    if L["raw"]:
        a = a.reshape(-1, 1, 1)
    if a.dtype != np.int8 or a.shape[0] != L["C"]:
        raise ValueError(f"layer {L['name']} takes int8 activations with {L['C']} channels; "
                         f"got {a.dtype} {a.shape}")
    return {"w": net.qweights[i], "a": a, "stride": L["stride"], "pad": L["pad"],
            "requant": net.requant[i], "relu": L["relu"]}


def digits_split(net: Network) -> tuple[np.ndarray, np.ndarray]:
    """The network's test split of scikit-learn's digits: (pixels uint8 (N, 8, 8), labels)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    idx = np.asarray(net.test_idx)
    return d.images[idx].astype(np.uint8), d.target[idx].astype(np.int64)
