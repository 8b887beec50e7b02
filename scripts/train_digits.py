"""Train, prune and quantize the digits CNN of :mod:`doublesparse.sim.cnn` (NumPy only).

Steps, all seeded from ``numpy.random.default_rng(seed)`` (the 80/20 stratified split uses
the fixed seed :data:`SPLIT_SEED`):

1. dense training: im2col convolutions, softmax cross-entropy, Adam, mini-batches, random
   1-pixel shifts as augmentation;
2. gradual magnitude pruning per layer to :data:`TARGET_SPARSITY` (cubic schedule over
   ``prune_steps`` steps, fine-tuning after each), then fine-tuning with the masks fixed;
3. calibration: each conv layer's output scale is a percentile of its post-ReLU float
   outputs on the training set divided by 127; the percentile is the candidate that gives
   the best int8 accuracy on the training set (the test split is not looked at);
4. symmetric per-output-channel int8 weights and the per-channel integer requantization
   ``(mult, shift)`` the engine applies (``mult`` fits int16, ``shift`` in 0..47);
5. evaluation of the float and the int8 golden model (``int8_forward``) on every test image,
   ``sim/digits_cnn.npz``, and the same network as a quantized ONNX model (QDQ form,
   ``sim.onnx_build.digits_onnx``) next to it, ``sim/digits_cnn.onnx``.

Run: ``python -m doublesparse.scripts.train_digits [--seed 0] [--epochs 30] [--out PATH]
[--onnx PATH]``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ..sim.cnn import (
    DEFAULT_PATH,
    INPUT_SCALE,
    LAYERS,
    Network,
    float_forward,
    int8_forward,
    quantize_input,
    save_network,
    sparsity,
)
from ..sim.conv import im2col, requant_params, requantize
from ..sim.onnx_build import save_digits_onnx

__all__ = ["train", "main", "TARGET_SPARSITY", "SPLIT_SEED", "requant_params"]

SPLIT_SEED = 0
#: Fraction of zero weights per layer (conv1 has only 144 weights, so it is pruned less).
TARGET_SPARSITY = (0.5, 0.8, 0.85, 0.85)
PERCENTILES = (99.99, 99.9, 100.0, 99.5, 99.0)


# -- layers -------------------------------------------------------------------------------
_im2col = im2col   # (N, C, H, W) -> (N, C*R*S, Ho*Wo), Ho, Wo


def _col2im(dcols: np.ndarray, shape: tuple[int, ...], R: int, S: int, stride: int, pad: int,
            Ho: int, Wo: int) -> np.ndarray:
    N, C, H, W = shape
    d = dcols.reshape(N, C, R, S, Ho, Wo)
    dxp = np.zeros((N, C, H + 2 * pad, W + 2 * pad), dcols.dtype)
    for r in range(R):
        for s in range(S):
            dxp[:, :, r:r + stride * Ho:stride, s:s + stride * Wo:stride] += d[:, :, r, s]
    return dxp[:, :, pad:pad + H, pad:pad + W]


def _forward(ws: list[np.ndarray], x: np.ndarray) -> tuple[np.ndarray, list]:
    """Float forward of a batch (N, 1, 8, 8); returns logits and the cache for backward."""
    cache = []
    for L, w in zip(LAYERS[:-1], ws[:-1], strict=True):
        cols, Ho, Wo = _im2col(x, L["R"], L["S"], L["stride"], L["pad"])
        y = np.maximum(w.reshape(L["K"], -1) @ cols, 0)
        cache.append((x.shape, cols, y, Ho, Wo))
        x = y.reshape(x.shape[0], L["K"], Ho, Wo)
    flat = x.reshape(x.shape[0], -1)
    cache.append(flat)
    return flat @ ws[-1].reshape(LAYERS[-1]["K"], -1).T, cache


def _backward(ws: list[np.ndarray], cache: list, dlogits: np.ndarray) -> list[np.ndarray]:
    flat = cache[-1]
    wfc = ws[-1].reshape(LAYERS[-1]["K"], -1)
    grads = [np.empty(0)] * len(LAYERS)
    grads[-1] = (dlogits.T @ flat).reshape(ws[-1].shape)
    dx = dlogits @ wfc
    for i in range(len(LAYERS) - 2, -1, -1):
        L = LAYERS[i]
        xshape, cols, y, Ho, Wo = cache[i]
        dy = dx.reshape(y.shape) * (y > 0)
        grads[i] = np.tensordot(dy, cols, axes=([0, 2], [0, 2])).reshape(ws[i].shape)
        if i:
            dcols = ws[i].reshape(L["K"], -1).T @ dy
            dx = _col2im(dcols, xshape, L["R"], L["S"], L["stride"], L["pad"], Ho, Wo)
    return grads


def _loss(logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    n = len(y)
    loss = float(-np.log(p[np.arange(n), y] + 1e-12).mean())
    p[np.arange(n), y] -= 1
    return loss, (p / n).astype(np.float32)


def _shift(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Shift every image by -1, 0 or +1 pixel in each direction (zero fill)."""
    N = x.shape[0]
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    oy, ox = rng.integers(0, 3, N), rng.integers(0, 3, N)
    out = np.empty_like(x)
    for dy in range(3):
        for dx in range(3):
            sel = (oy == dy) & (ox == dx)
            out[sel] = xp[sel, :, dy:dy + 8, dx:dx + 8]
    return out


class _Adam:
    def __init__(self, ws: list[np.ndarray], b1: float = 0.9, b2: float = 0.999,
                 eps: float = 1e-8):
        self.m = [np.zeros_like(w) for w in ws]
        self.v = [np.zeros_like(w) for w in ws]
        self.b1, self.b2, self.eps, self.t = b1, b2, eps, 0

    def step(self, ws: list[np.ndarray], grads: list[np.ndarray], lr: float,
             masks: list[np.ndarray]) -> None:
        self.t += 1
        c1, c2 = 1 - self.b1 ** self.t, 1 - self.b2 ** self.t
        for w, g, m, v, k in zip(ws, grads, self.m, self.v, masks, strict=True):
            g = g * k
            m *= self.b1
            m += (1 - self.b1) * g
            v *= self.b2
            v += (1 - self.b2) * g * g
            w -= (lr * (m / c1) / (np.sqrt(v / c2) + self.eps)).astype(w.dtype)
            w *= k


def _epoch(ws, masks, opt, X, y, rng, lr, batch: int) -> tuple[float, float]:
    order = rng.permutation(len(y))
    tot, correct = 0.0, 0
    for b in range(0, len(y), batch):
        idx = order[b:b + batch]
        xb = _shift(X[idx], rng)
        logits, cache = _forward(ws, xb)
        loss, dl = _loss(logits, y[idx])
        opt.step(ws, _backward(ws, cache, dl), lr, masks)
        tot += loss * len(idx)
        correct += int(np.sum(logits.argmax(1) == y[idx]))
    return tot / len(y), correct / len(y)


def _prune_masks(ws: list[np.ndarray], frac: list[float]) -> list[np.ndarray]:
    """Per layer, zero the ``frac`` smallest-magnitude weights (exact count, stable order)."""
    masks = []
    for w, f in zip(ws, frac, strict=True):
        n_zero = int(round(f * w.size))
        order = np.argsort(np.abs(w).reshape(-1), kind="stable")
        m = np.ones(w.size, np.float32)
        m[order[:n_zero]] = 0
        masks.append(m.reshape(w.shape))
    return masks


# -- quantization -------------------------------------------------------------------------
def _quantize_weights(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    K = w.shape[0]
    amax = np.abs(w.reshape(K, -1)).max(axis=1).astype(np.float64)
    scale = np.where(amax > 0, amax / 127.0, 1.0)
    q = np.clip(np.rint(w / scale.reshape(-1, 1, 1, 1)), -127, 127).astype(np.int8)
    return q, scale


def _build(ws: list[np.ndarray], act_scales: list[float]) -> tuple[list, list, list, np.ndarray]:
    qws, wscales, requant = [], [], []
    s_in = INPUT_SCALE
    for i, L in enumerate(LAYERS):
        q, sw = _quantize_weights(ws[i])
        qws.append(q)
        wscales.append(sw)
        if L["raw"]:
            requant.append(None)
            fc_scale = s_in * sw
        else:
            requant.append(requant_params(s_in * sw / act_scales[i]))
            s_in = act_scales[i]
    return qws, wscales, requant, fc_scale


def _int8_logits_batch(net: Network, pixels: np.ndarray) -> np.ndarray:
    """Batched int8 golden forward (same arithmetic as ``int8_forward``; the accumulators
    are exact in float64 since they stay far below 2**53)."""
    a = np.stack([quantize_input(p) for p in pixels]).astype(np.float64)
    for i, L in enumerate(LAYERS):
        if L["raw"]:
            a = a.reshape(a.shape[0], -1, 1, 1)
        cols, Ho, Wo = _im2col(a, L["R"], L["S"], L["stride"], L["pad"])
        acc = np.rint(net.qweights[i].reshape(L["K"], -1).astype(np.float64) @ cols)
        acc = acc.astype(np.int64).reshape(a.shape[0], L["K"], Ho, Wo)
        if L["raw"]:
            return acc.reshape(a.shape[0], -1) * net.fc_scale
        y = requantize(acc.transpose(1, 0, 2, 3), *net.requant[i], relu=L["relu"])
        a = y.transpose(1, 0, 2, 3).astype(np.float64)
    raise AssertionError("LAYERS has no raw output layer")


# -- training -----------------------------------------------------------------------------
def train(seed: int = 0, out: Path | str | None = DEFAULT_PATH, epochs: int = 60,
          prune_steps: int = 8, prune_epochs: int = 8, final_epochs: int = 60,
          batch: int = 32, lr: float = 2e-3, verbose: bool = True,
          onnx_out: Path | str | None = None) -> Network:
    """Train, prune, fine-tune, calibrate and quantize; save to ``out`` (unless None) and,
    as ONNX, to ``onnx_out`` (default: ``out`` with suffix ``.onnx``; nothing if ``out`` is
    None).

    BLAS runs single-threaded: the matrices are small, so threads only cost time (a lot on
    a busy machine), and the results do not depend on the core count."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        net = _train(seed, out, epochs, prune_steps, prune_epochs, final_epochs, batch, lr,
                     verbose)
    if out is not None:
        path = save_digits_onnx(net, onnx_out or Path(out).with_suffix(".onnx"))
        if verbose:
            print(f"wrote {path} ({path.stat().st_size} bytes)")
    return net


def _train(seed: int, out: Path | str | None, epochs: int, prune_steps: int,
           prune_epochs: int, final_epochs: int, batch: int, lr: float,
           verbose: bool) -> Network:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    t0 = time.time()
    say = print if verbose else (lambda *a, **k: None)
    d = load_digits()
    idx = np.arange(len(d.target))
    train_idx, test_idx = train_test_split(idx, test_size=0.2, stratify=d.target,
                                           random_state=SPLIT_SEED)
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    Xtr = (d.images[train_idx] / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    ytr = d.target[train_idx].astype(np.int64)

    rng = np.random.default_rng(seed)
    ws = []
    for L in LAYERS:
        fan_in = L["C"] * L["R"] * L["S"]
        ws.append((rng.standard_normal((L["K"], L["C"], L["R"], L["S"]))
                   * np.sqrt(2.0 / fan_in)).astype(np.float32))
    masks = [np.ones_like(w) for w in ws]
    opt = _Adam(ws)

    def run(phase: str, n: int, lr_at) -> None:
        for e in range(n):
            loss, acc = _epoch(ws, masks, opt, Xtr, ytr, rng, lr_at(e, n), batch)
            say(f"{phase} epoch {e + 1:3d}/{n}: loss {loss:.4f}  train acc {acc:.4f}  "
                f"({time.time() - t0:.1f} s)")

    run("dense", epochs, lambda e, n: lr)
    dense_logits, _ = _forward(ws, (d.images[test_idx] / 16.0).astype(np.float32)
                               .reshape(-1, 1, 8, 8))
    dense_acc = float(np.mean(dense_logits.argmax(1) == d.target[test_idx]))
    say(f"dense float test accuracy {dense_acc:.4f} (reported only, not used for any choice)")
    for step in range(1, prune_steps + 1):
        frac = [f * (1 - (1 - step / prune_steps) ** 3) for f in TARGET_SPARSITY]
        masks = _prune_masks(ws, frac)
        for w, m in zip(ws, masks, strict=True):
            w *= m
        say(f"prune step {step}/{prune_steps}: zero fraction per layer "
            + ", ".join(f"{L['name']} {f:.3f}" for L, f in zip(LAYERS, frac, strict=True)))
        run(f"prune {step}", prune_epochs, lambda e, n: lr / 2)
    run("final", final_epochs,
        lambda e, n: 1e-5 + (lr / 2 - 1e-5) * 0.5 * (1 + np.cos(np.pi * e / max(1, n))))

    # calibration: post-ReLU float outputs of the conv layers on the (unshifted) train set
    x, acts = Xtr, []
    for L, w in zip(LAYERS[:-1], ws[:-1], strict=True):
        cols, Ho, Wo = _im2col(x, L["R"], L["S"], L["stride"], L["pad"])
        x = np.maximum(w.reshape(L["K"], -1) @ cols, 0).reshape(x.shape[0], L["K"], Ho, Wo)
        acts.append(x.reshape(-1).astype(np.float64))
    train_pixels = d.images[train_idx]
    best = None
    for pct in PERCENTILES:
        scales = [max(float(np.percentile(a, pct)), 1e-6) / 127.0 for a in acts]
        qws, wscales, requant, fc_scale = _build(ws, scales)
        net = Network([w.copy() for w in ws], qws, requant, INPUT_SCALE, wscales, scales,
                      fc_scale, test_idx, train_idx, {})
        acc = float(np.mean(_int8_logits_batch(net, train_pixels).argmax(1) == ytr))
        say(f"calibration percentile {pct}: int8 train acc {acc:.4f}")
        if best is None or acc > best[0]:
            best = (acc, pct, net)
    _, pct, net = best

    # evaluation on every test image
    test_pixels, yte = d.images[test_idx], d.target[test_idx]
    float_pred = float_forward(net, test_pixels / 16.0).argmax(1)
    int8_logits = np.stack([int8_forward(net, p)[0] for p in test_pixels])
    int8_pred = int8_logits.argmax(1)
    batch_pred = _int8_logits_batch(net, test_pixels).argmax(1)
    if not np.array_equal(batch_pred, int8_pred):
        raise AssertionError("batched int8 forward disagrees with int8_forward")
    float_acc = float(np.mean(float_pred == yte))
    int8_acc = float(np.mean(int8_pred == yte))
    per, overall = sparsity(net.qweights)
    mask_per = [float(np.mean(m == 0)) for m in masks]
    seconds = time.time() - t0
    net.meta = {
        "seed": seed, "split_seed": SPLIT_SEED, "test_size": 0.2, "epochs": epochs,
        "prune_steps": prune_steps, "prune_epochs": prune_epochs,
        "final_epochs": final_epochs, "batch": batch, "lr": lr,
        "target_sparsity": list(TARGET_SPARSITY), "calibration_percentile": pct,
        "dense_float_test_acc": dense_acc, "float_test_acc": float_acc,
        "int8_test_acc": int8_acc,
        "int8_float_pred_agreement": float(np.mean(float_pred == int8_pred)),
        "sparsity": {L["name"]: s for L, s in zip(LAYERS, per, strict=True)},
        "mask_sparsity": {L["name"]: s for L, s in zip(LAYERS, mask_per, strict=True)},
        "sparsity_overall": overall, "train_seconds": round(seconds, 1),
    }
    say(f"calibration: percentile {pct}, activation scales "
        + ", ".join(f"{s:.5f}" for s in net.act_scales))
    say(f"float test accuracy {float_acc:.4f}, int8 golden test accuracy {int8_acc:.4f} "
        f"({len(yte)} images; predictions agree on {net.meta['int8_float_pred_agreement']:.4f})")
    say("zero weights (int8): " + ", ".join(
        f"{L['name']} {s:.3f} ({int(np.sum(q == 0))}/{q.size})"
        for L, s, q in zip(LAYERS, per, net.qweights, strict=True))
        + f"; overall {overall:.4f}")
    if out is not None:
        path = save_network(net, out)
        say(f"wrote {path} ({path.stat().st_size} bytes) in {seconds:.1f} s")
    return net


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m doublesparse.scripts.train_digits",
                                description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=DEFAULT_PATH)
    p.add_argument("--onnx", type=Path, default=None,
                   help="also write the network as a quantized ONNX model here (default: "
                        "--out with suffix .onnx)")
    p.add_argument("--epochs", type=int, default=60, help="dense epochs (default 60)")
    p.add_argument("--prune-steps", type=int, default=8, help="pruning steps (default 8)")
    p.add_argument("--prune-epochs", type=int, default=8,
                   help="fine-tuning epochs after each pruning step (default 8)")
    p.add_argument("--final-epochs", type=int, default=60,
                   help="fine-tuning epochs with the masks fixed (default 60)")
    a = p.parse_args(argv)
    train(a.seed, a.out, a.epochs, a.prune_steps, a.prune_epochs, a.final_epochs,
          onnx_out=a.onnx)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
