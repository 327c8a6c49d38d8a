"""CPU kernels against PyTorch CPU (oneDNN) on the layer shapes of the books' models.

Batch 16, float32. PyTorch runs on channels-last tensors, the same memory layout as
convlab's NHWC, with as many threads as convlab. Each case times convlab and torch back to
back; the summary table (benches/conftest.py) prints the medians and the ratio.

    python -m pytest benches -q
"""

import os

import numpy as np
import pytest

from convlab import _cpu, kernels

torch = pytest.importorskip("torch")
F = torch.nn.functional
torch.set_num_threads(_cpu.num_threads())

BATCH = int(os.environ.get("CONVLAB_BENCH_BATCH", 16))
rng = np.random.default_rng(0)

# (name, input HWC, filters, kernel, stride, padding[, batch]); "same" cases have symmetric
# padding so torch's explicit padding matches exactly. The MNIST convnet's three layers run at
# its training batch, 64.
CONV_CASES = [
    ("cats-vs-dogs conv1 180x180x3->32", (180, 180, 3), 32, 3, 1, "valid"),
    ("cats-vs-dogs conv2 89x89x32->64", (89, 89, 32), 64, 3, 1, "valid"),
    ("cats-vs-dogs conv3 45x45x128->256", (45, 45, 128), 256, 3, 1, "valid"),
    ("100x100x64->64 same", (100, 100, 64), 64, 3, 1, "same"),
    ("pointwise 1x1 45x45x128->256", (45, 45, 128), 256, 1, 1, "valid"),
    ("mnist conv1 28x28x1->32 batch 64", (28, 28, 1), 32, 3, 1, "valid", 64),
    ("mnist conv2 13x13x32->64 batch 64", (13, 13, 32), 64, 3, 1, "valid", 64),
    ("mnist conv3 5x5x64->128 batch 64", (5, 5, 64), 128, 3, 1, "valid", 64),
]


def _nhwc(shape, batch=None):
    return rng.standard_normal((batch or BATCH,) + shape).astype(np.float32)


def _torch_nchw(x):
    """An NCHW view of an NHWC array: channels-last memory, no copy."""
    return torch.from_numpy(x).permute(0, 3, 1, 2)


def _torch_oihw(kernel):
    return torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))


@pytest.mark.parametrize("impl", ["convlab", "torch"])
@pytest.mark.parametrize("case", CONV_CASES, ids=[c[0] for c in CONV_CASES])
@pytest.mark.parametrize("pass_", ["forward", "backward_input", "backward_kernel"])
def test_conv2d(record, case, pass_, impl):
    name, shape, filters, k, stride, padding = case[:6]
    x = _nhwc(shape, case[6] if len(case) > 6 else None)
    w = (rng.standard_normal((k, k, shape[2], filters)) / np.sqrt(k * k * shape[2])).astype(np.float32)
    y = kernels.conv2d_forward(x, w, strides=stride, padding=padding)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    if impl == "convlab":
        fn = {
            "forward": lambda: kernels.conv2d_forward(x, w, strides=stride, padding=padding),
            "backward_input": lambda: kernels.conv2d_backward_input(gy, w, x.shape, stride, padding),
            "backward_kernel": lambda: kernels.conv2d_backward_kernel(x, gy, w.shape, stride, padding),
        }[pass_]
    else:
        pad = (k - 1) // 2 if padding == "same" else 0
        xt, wt, gyt = _torch_nchw(x), _torch_oihw(w), _torch_nchw(gy)
        wt = wt.contiguous(memory_format=torch.channels_last)
        args = (None, [stride] * 2, [pad] * 2, [1, 1], False, [0, 0], 1)
        fn = {
            "forward": lambda: F.conv2d(xt, wt, stride=stride, padding=pad),
            "backward_input": lambda: torch.ops.aten.convolution_backward(
                gyt, xt, wt, *args, [True, False, False]),
            "backward_kernel": lambda: torch.ops.aten.convolution_backward(
                gyt, xt, wt, *args, [False, True, False]),
        }[pass_]
    with torch.no_grad():
        record(f"conv2d {pass_} {name}", impl, fn)


@pytest.mark.parametrize("impl", ["convlab", "torch"])
@pytest.mark.parametrize("pass_", ["forward", "backward_input", "backward_kernel"])
def test_conv2d_transpose(record, pass_, impl):
    # The segmentation net's ConvT(128, 3, strides=2, padding="same"): 50x50x128 -> 100x100x128.
    x = _nhwc((50, 50, 128))
    w = (rng.standard_normal((3, 3, 128, 128)) / 40).astype(np.float32)
    y = kernels.conv2d_transpose_forward(x, w, strides=2, padding="same")
    gy = rng.standard_normal(y.shape).astype(np.float32)
    if impl == "convlab":
        fn = {
            "forward": lambda: kernels.conv2d_transpose_forward(x, w, strides=2, padding="same"),
            "backward_input": lambda: kernels.conv2d_transpose_backward_input(
                gy, w, x.shape, strides=2, padding="same"),
            "backward_kernel": lambda: kernels.conv2d_transpose_backward_kernel(
                x, gy, w.shape, strides=2, padding="same"),
        }[pass_]
    else:
        # Same sizes and work; torch crops its padding from the other side, which only
        # shifts the output by a pixel.
        xt, gyt = _torch_nchw(x), _torch_nchw(gy)
        wt = torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1)))  # (cin, cout, kh, kw)
        args = (None, [2, 2], [1, 1], [1, 1], True, [1, 1], 1)
        fn = {
            "forward": lambda: F.conv_transpose2d(xt, wt, stride=2, padding=1, output_padding=1),
            "backward_input": lambda: torch.ops.aten.convolution_backward(
                gyt, xt, wt, *args, [True, False, False]),
            "backward_kernel": lambda: torch.ops.aten.convolution_backward(
                gyt, xt, wt, *args, [False, True, False]),
        }[pass_]
    with torch.no_grad():
        record(f"conv2d_transpose {pass_} 50x50x128->128 s2 same", impl, fn)


# The mini Xception's first and third blocks.
DEPTHWISE_SHAPES = [(176, 176, 32), (45, 45, 128)]


@pytest.mark.parametrize("impl", ["convlab", "torch"])
@pytest.mark.parametrize("shape", DEPTHWISE_SHAPES, ids=["x".join(map(str, s)) for s in DEPTHWISE_SHAPES])
@pytest.mark.parametrize("pass_", ["forward", "backward_input", "backward_kernel"])
def test_depthwise_conv2d(record, pass_, shape, impl):
    channels = shape[2]
    x = _nhwc(shape)
    w = (rng.standard_normal((3, 3, channels, 1)) / 3).astype(np.float32)
    y = kernels.depthwise_conv2d_forward(x, w, padding="same")
    gy = rng.standard_normal(y.shape).astype(np.float32)
    if impl == "convlab":
        fn = {
            "forward": lambda: kernels.depthwise_conv2d_forward(x, w, padding="same"),
            "backward_input": lambda: kernels.depthwise_conv2d_backward_input(
                gy, w, x.shape, padding="same"),
            "backward_kernel": lambda: kernels.depthwise_conv2d_backward_kernel(
                x, gy, w.shape, padding="same"),
        }[pass_]
    else:
        xt, gyt = _torch_nchw(x), _torch_nchw(gy)
        wt = torch.from_numpy(np.ascontiguousarray(w.transpose(2, 3, 0, 1)))  # (C, 1, 3, 3)
        args = (None, [1, 1], [1, 1], [1, 1], False, [0, 0], channels)
        fn = {
            "forward": lambda: F.conv2d(xt, wt, padding=1, groups=channels),
            "backward_input": lambda: torch.ops.aten.convolution_backward(
                gyt, xt, wt, *args, [True, False, False]),
            "backward_kernel": lambda: torch.ops.aten.convolution_backward(
                gyt, xt, wt, *args, [False, True, False]),
        }[pass_]
    with torch.no_grad():
        record(f"depthwise_conv2d {pass_} {'x'.join(map(str, shape))} 3x3 same", impl, fn)


@pytest.mark.parametrize("impl", ["separable", "conv2d"])
@pytest.mark.parametrize("channels", [64, 128])
def test_separable_against_conv2d(record, channels, impl):
    """SeparableConv2D (depthwise 3x3, then pointwise) against a full Conv2D with the same
    channels, both convlab, forward: 45x45, batch 16. The separable conv does
    (9 + channels) / (9 * channels) of the full conv's multiply-adds (7.9x fewer at 64)."""
    x = _nhwc((45, 45, channels))
    depthwise = (rng.standard_normal((3, 3, channels, 1)) / 3).astype(np.float32)
    pointwise = (rng.standard_normal((1, 1, channels, channels)) / np.sqrt(channels)).astype(np.float32)
    full = (rng.standard_normal((3, 3, channels, channels)) / np.sqrt(9 * channels)).astype(np.float32)
    if impl == "separable":
        def fn():
            return kernels.conv2d_forward(kernels.depthwise_conv2d_forward(x, depthwise, padding="same"), pointwise)
    else:
        def fn():
            return kernels.conv2d_forward(x, full, padding="same")
    record(f"separable vs conv2d forward 45x45x{channels}->{channels} 3x3 same", impl, fn)


@pytest.mark.parametrize("impl", ["convlab", "torch"])
@pytest.mark.parametrize("op", ["max_forward", "max_backward", "avg_forward", "avg_backward"])
def test_pool2d(record, op, impl):
    x = _nhwc((178, 178, 32))  # after the cats-vs-dogs first conv
    gy = rng.standard_normal((BATCH, 89, 89, 32)).astype(np.float32)
    if impl == "convlab":
        fn = {
            "max_forward": lambda: kernels.max_pool2d_forward(x, 2),
            "max_backward": lambda: kernels.max_pool2d_backward(x, gy, 2),
            "avg_forward": lambda: kernels.avg_pool2d_forward(x, 2),
            "avg_backward": lambda: kernels.avg_pool2d_backward(gy, x.shape, 2),
        }[op]
    else:
        xt, gyt = _torch_nchw(x), _torch_nchw(gy)
        _, indices = F.max_pool2d(xt, 2, return_indices=True)
        fn = {
            # torch's backward reuses the argmax indices its forward saved; convlab
            # recomputes them from x (nothing saved between passes).
            "max_forward": lambda: F.max_pool2d(xt, 2),
            "max_backward": lambda: torch.ops.aten.max_pool2d_with_indices_backward(
                gyt, xt, [2, 2], [2, 2], [0, 0], [1, 1], False, indices),
            "avg_forward": lambda: F.avg_pool2d(xt, 2),
            "avg_backward": lambda: torch.ops.aten.avg_pool2d_backward(
                gyt, xt, [2, 2], [2, 2], [0, 0], False, True, None),
        }[op]
    with torch.no_grad():
        record(f"pool2d {op} 2x2 on 178x178x32", impl, fn)


@pytest.mark.parametrize("impl", ["convlab", "torch"])
@pytest.mark.parametrize("pass_", ["training_forward", "backward"])
def test_batch_norm(record, pass_, impl):
    x = _nhwc((90, 90, 64))  # a mini-Xception-sized activation
    gy = rng.standard_normal(x.shape).astype(np.float32)
    gamma, beta = np.ones(64, np.float32), np.zeros(64, np.float32)
    mean, var = np.zeros(64, np.float32), np.ones(64, np.float32)
    if impl == "convlab":
        _, batch_mean, batch_var = kernels.batch_norm_forward_training(x, gamma, beta, mean, var)
        fn = {
            "training_forward": lambda: kernels.batch_norm_forward_training(x, gamma, beta, mean, var),
            "backward": lambda: kernels.batch_norm_backward(gy, x, gamma, batch_mean, batch_var),
        }[pass_]
    else:
        xt, gyt = _torch_nchw(x), _torch_nchw(gy)
        gt, bt, mt, vt = (torch.from_numpy(a.copy()) for a in (gamma, beta, mean, var))
        _, save_mean, save_invstd = torch.ops.aten.native_batch_norm(xt, gt, bt, mt, vt, True, 0.01, 1e-3)
        fn = {
            "training_forward": lambda: torch.ops.aten.native_batch_norm(xt, gt, bt, mt, vt, True, 0.01, 1e-3),
            "backward": lambda: torch.ops.aten.native_batch_norm_backward(
                gyt, xt, gt, mt, vt, save_mean, save_invstd, True, 1e-3, [True, True, True]),
        }[pass_]
    with torch.no_grad():
        record(f"batch_norm {pass_} 90x90x64", impl, fn)
