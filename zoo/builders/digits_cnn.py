"""A small CNN trained at build time on scikit-learn's digits, so the zoo has a model whose
accuracy means something: Conv 3x3 (8) → Relu → MaxPool 2 → Conv 3x3 (16) → Relu → MaxPool 2 →
Flatten → Gemm 10. Training is plain numpy (seeded init, seeded mini-batch order, fixed
epochs, Adam), so the same options give the same weights, in a few seconds on a CPU."""

from __future__ import annotations

import itertools

import numpy as np
import onnx
from numpy.lib.stride_tricks import sliding_window_view
from onnx import TensorProto, helper

from zoo.builders.graph_builder import GraphBuilder

CHANNELS = (1, 8, 16)
CLASSES = 10


def _im2col(x: np.ndarray) -> np.ndarray:
    """3x3 patches of x [n, c, h, w] (padded by 1) as rows [n*h*w, c*9]."""
    n, c, h, w = x.shape
    windows = sliding_window_view(np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1))), (3, 3), (2, 3))
    return windows.transpose(0, 2, 3, 1, 4, 5).reshape(n * h * w, c * 9)


def _col2im(cols: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The gradient on x from the gradient on its `_im2col` rows."""
    n, c, h, w = shape
    patches = cols.reshape(n, h, w, c, 3, 3)
    padded = np.zeros((n, c, h + 2, w + 2), cols.dtype)
    for i in range(3):
        for j in range(3):
            padded[:, :, i : i + h, j : j + w] += patches[..., i, j].transpose(0, 3, 1, 2)
    return padded[:, :, 1:-1, 1:-1]


def _pool_windows(x: np.ndarray) -> np.ndarray:
    """x [n, c, h, w] as its 2x2 windows, one a row: [n * c * h/2 * w/2, 4]."""
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(-1, 4)


def _unpool(grad: np.ndarray, choice: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Routes each pooled gradient back to the window element that was the max."""
    n, c, h, w = shape
    windows = np.zeros((grad.size, 4), grad.dtype)
    windows[np.arange(grad.size), choice] = grad.reshape(-1)
    return windows.reshape(n, c, h // 2, w // 2, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(shape)


def _gradients(params: list[np.ndarray], x: np.ndarray, labels: np.ndarray) -> list[np.ndarray]:
    """Gradients of the mean softmax cross-entropy with respect to each parameter."""
    caches = []
    state = x
    for weight, bias in zip(params[0:4:2], params[1:4:2], strict=True):
        cols = _im2col(state)
        n, _, h, w = state.shape
        out = (cols @ weight.reshape(len(weight), -1).T + bias).reshape(n, h, w, -1)
        active = out.transpose(0, 3, 1, 2) > 0
        relu = np.where(active, out.transpose(0, 3, 1, 2), 0)
        windows = _pool_windows(relu)
        choice = windows.argmax(axis=1)
        caches.append((state.shape, cols, active, choice, relu.shape))
        state = windows[np.arange(len(windows)), choice].reshape(n, -1, h // 2, w // 2)
    flat = state.reshape(len(state), -1)
    logits = flat @ params[4].T + params[5]
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    probs[np.arange(len(labels)), labels] -= 1
    dlogits = probs / len(labels)
    grads = [dlogits.T @ flat, dlogits.sum(axis=0)]
    dstate = (dlogits @ params[4]).reshape(state.shape)
    for index in (1, 0):
        shape, cols, active, choice, relu_shape = caches[index]
        dout = np.where(active, _unpool(dstate, choice, relu_shape), 0)
        dflat = dout.transpose(0, 2, 3, 1).reshape(-1, dout.shape[1])
        weight = params[2 * index]
        grads[:0] = [(dflat.T @ cols).reshape(weight.shape), dflat.sum(axis=0)]
        if index:  # the pixels need no gradient
            dstate = _col2im(dflat @ weight.reshape(len(weight), -1), shape)
    return grads


def train(images: np.ndarray, labels: np.ndarray, *, epochs: int, seed: int) -> list[np.ndarray]:
    """[conv1 W, b, conv2 W, b, gemm W, b] (ONNX layouts) after `epochs` of Adam, batches of
    64 in a seeded order."""
    rng = np.random.default_rng(seed)
    params: list[np.ndarray] = []
    for fan_in, fan_out in itertools.pairwise(CHANNELS):
        scale = np.sqrt(2.0 / (fan_in * 9))
        params += [rng.standard_normal((fan_out, fan_in, 3, 3)) * scale, np.zeros(fan_out)]
    flat = CHANNELS[-1] * 2 * 2
    params += [rng.standard_normal((CLASSES, flat)) * np.sqrt(1.0 / flat), np.zeros(CLASSES)]
    params = [p.astype(np.float32) for p in params]
    moments = [np.zeros_like(p) for p in params]
    squares = [np.zeros_like(p) for p in params]
    rate, beta1, beta2, step = 0.01, 0.9, 0.999, 0
    for _ in range(epochs):
        order = rng.permutation(len(images))
        for start in range(0, len(order), 64):
            batch = order[start : start + 64]
            step += 1
            grads = _gradients(params, images[batch], labels[batch])
            for p, g, m, v in zip(params, grads, moments, squares, strict=True):
                m += (1 - beta1) * (g - m)
                v += (1 - beta2) * (g * g - v)
                corrected = rate * np.sqrt(1 - beta2**step) / (1 - beta1**step)
                p -= (corrected * m / (np.sqrt(v) + 1e-8)).astype(np.float32)
    return params


def build_digits_cnn(
    *, epochs: int = 30, seed: int = 0, batch: int | str = "batch"
) -> onnx.ModelProto:
    """Input `pixels` (float [batch, 1, 8, 8] in [0, 1]); output `logits` (float [batch, 10]).
    Trains on the digits' train split first."""
    from threadpoolctl import threadpool_limits  # comes with scikit-learn

    from zoo.datasets.digits import split

    train_x, train_y, _, _ = split()
    # One BLAS thread: the matrices are tiny, so threads only cost time (several times over),
    # and a fixed thread count keeps the sums, so the weights, the same run to run.
    with threadpool_limits(limits=1, user_api="blas"):
        conv1_w, conv1_b, conv2_w, conv2_b, gemm_w, gemm_b = train(
            train_x, train_y, epochs=epochs, seed=seed
        )
    b = GraphBuilder(opset=13, seed=seed)
    state = "pixels"
    for weight, bias in ((conv1_w, conv1_b), (conv2_w, conv2_b)):
        conv = b.op(
            "Conv",
            [state, b.const("weight", weight), b.const("bias", bias)],
            kernel_shape=[3, 3],
            pads=[1, 1, 1, 1],
        )
        state = b.op("MaxPool", [b.op("Relu", [conv])], kernel_shape=[2, 2], strides=[2, 2])
    flat = b.op("Flatten", [state], axis=1)
    b.op("Gemm", [flat, b.const("weight", gemm_w), b.const("bias", gemm_b)], transB=1)
    b.nodes[-1].output[0] = "logits"
    return b.model(
        "digits_cnn",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [batch, 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, CLASSES])],
    )
