"""Each layer's forward output against PyTorch's equivalent on random weights and inputs.

PyTorch is NCHW with (out, in, kh, kw) kernels and symmetric padding; the helpers below
convert the layouts and spell out Keras/TensorFlow "same" padding (the smaller half
before) with an explicit F.pad, so agreement checks convlab's geometry as well as its sums.
"""

import math

import numpy as np
import pytest

from convlab import layers
from convlab.testing import assert_close

torch = pytest.importorskip("torch")
F = torch.nn.functional

F64 = {"dtype": "float64"}


def randn(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def nchw(x):
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def nhwc(t):
    return t.detach().numpy().transpose(0, 2, 3, 1)


def same_pads(size, kernel, stride, dilation=1):
    """TensorFlow 'same': (before, after) padding of one axis."""
    k_eff = (kernel - 1) * dilation + 1
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + k_eff - size, 0)
    return total // 2, total - total // 2


def pad_same(t, kernel, stride, dilation=(1, 1), value=0.0):
    top, bottom = same_pads(t.shape[2], kernel[0], stride[0], dilation[0])
    left, right = same_pads(t.shape[3], kernel[1], stride[1], dilation[1])
    return F.pad(t, (left, right, top, bottom), value=value)


def check(actual, expected):
    assert_close(actual.numpy(), expected, rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------- convolutions

@pytest.mark.parametrize("kernel_size, strides, padding, dilation", [
    (3, 1, "valid", 1), (3, 2, "same", 1), ((2, 3), 2, "same", 1), (3, 1, "same", 2), ((1, 1), 1, "valid", 1),
])
def test_conv2d_matches_torch_conv2d(kernel_size, strides, padding, dilation):
    layer = layers.Conv2D(4, kernel_size, strides=strides, padding=padding, dilation_rate=dilation, **F64)
    x = randn(2, 7, 8, 3)
    y = layer(x)
    kernel, bias = layer.get_weights()
    bias = randn(4, seed=5)
    layer.set_weights([kernel, bias])
    t = nchw(x)
    if padding == "same":
        t = pad_same(t, layer.kernel_size, layer.strides, layer.dilation_rate)
    expected = F.conv2d(t, torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()), torch.from_numpy(bias),
                        stride=layer.strides, dilation=layer.dilation_rate)
    y = layer(x)
    check(y, nhwc(expected))


def transposed_reference(x, kernel, bias, strides, padding, output_padding, output_hw):
    """TensorFlow's conv2d_transpose: the full transposed conv, cropped (or zero-extended) to
    the Keras output size, starting at the 'same' padding's top/left amount."""
    weight = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy())  # (in, out, kh, kw)
    full = F.conv_transpose2d(nchw(x), weight, stride=strides)
    out = torch.zeros(full.shape[:2] + tuple(output_hw), dtype=full.dtype)
    starts = []
    for axis in range(2):
        size_in, k, s = x.shape[1 + axis], kernel.shape[axis], strides[axis]
        total = max((size_in - 1) * s + k - output_hw[axis], 0) if padding == "same" else 0
        starts.append(total // 2)
    rows = min(output_hw[0], full.shape[2] - starts[0])
    cols = min(output_hw[1], full.shape[3] - starts[1])
    out[:, :, :rows, :cols] = full[:, :, starts[0]:starts[0] + rows, starts[1]:starts[1] + cols]
    return nhwc(out + torch.from_numpy(bias)[None, :, None, None])


@pytest.mark.parametrize("kernel_size, strides, padding, output_padding", [
    (3, 1, "same", None), (3, 2, "same", None), (3, 2, "valid", None), (2, 3, "valid", None),
    (4, 2, "same", None), (3, 2, "same", 1), ((3, 2), (2, 3), "valid", (1, 2)),
])
def test_conv2d_transpose_matches_torch_conv_transpose2d(kernel_size, strides, padding, output_padding):
    layer = layers.Conv2DTranspose(3, kernel_size, strides=strides, padding=padding,
                                   output_padding=output_padding, **F64)
    x = randn(2, 4, 5, 2)
    layer(x)
    kernel = layer.kernel.numpy()
    bias = randn(3, seed=3)
    layer.set_weights([kernel, bias])
    y = layer(x)
    check(y, transposed_reference(x, kernel, bias, layer.strides, padding, output_padding, y.shape[1:3]))


@pytest.mark.parametrize("strides, padding, depth_multiplier", [(1, "valid", 1), (2, "same", 2), (1, "same", 3)])
def test_depthwise_conv2d_matches_torch_grouped_conv(strides, padding, depth_multiplier):
    layer = layers.DepthwiseConv2D(3, strides=strides, padding=padding, depth_multiplier=depth_multiplier, **F64)
    x = randn(2, 6, 7, 3)
    layer(x)
    kernel = layer.kernel.numpy()
    bias = randn(3 * depth_multiplier, seed=4)
    layer.set_weights([kernel, bias])
    weight = torch.from_numpy(kernel.reshape(3, 3, -1).transpose(2, 0, 1)[:, None].copy())
    t = pad_same(nchw(x), (3, 3), layer.strides) if padding == "same" else nchw(x)
    expected = F.conv2d(t, weight, torch.from_numpy(bias), stride=layer.strides, groups=3)
    check(layer(x), nhwc(expected))


def test_separable_conv2d_matches_torch_depthwise_then_pointwise():
    layer = layers.SeparableConv2D(5, 3, strides=2, padding="same", depth_multiplier=2, **F64)
    x = randn(2, 7, 7, 3)
    layer(x)
    depthwise, pointwise, _ = layer.get_weights()
    bias = randn(5, seed=6)
    layer.set_weights([depthwise, pointwise, bias])
    weight = torch.from_numpy(depthwise.reshape(3, 3, -1).transpose(2, 0, 1)[:, None].copy())
    middle = F.conv2d(pad_same(nchw(x), (3, 3), (2, 2)), weight, stride=2, groups=3)
    expected = F.conv2d(middle, torch.from_numpy(pointwise.transpose(3, 2, 0, 1).copy()), torch.from_numpy(bias))
    check(layer(x), nhwc(expected))


# --------------------------------------------------------------------------- pooling

@pytest.mark.parametrize("pool_size, strides, padding", [(2, None, "valid"), (3, 2, "same"), (3, 1, "same"), ((2, 3), (1, 2), "valid")])
def test_max_pooling2d_matches_torch_max_pool2d(pool_size, strides, padding):
    layer = layers.MaxPooling2D(pool_size, strides=strides, padding=padding, **F64)
    x = randn(2, 7, 6, 3)
    t = pad_same(nchw(x), layer.pool_size, layer.strides, value=-math.inf) if padding == "same" else nchw(x)
    check(layer(x), nhwc(F.max_pool2d(t, layer.pool_size, layer.strides)))


@pytest.mark.parametrize("pool_size, strides, padding", [(2, None, "valid"), (3, 2, "same"), (2, 1, "same")])
def test_average_pooling2d_matches_torch_counting_only_real_cells(pool_size, strides, padding):
    layer = layers.AveragePooling2D(pool_size, strides=strides, padding=padding, **F64)
    x = randn(2, 7, 6, 3)
    t, ones = nchw(x), torch.ones((1, 1, 7, 6), dtype=torch.float64)
    if padding == "same":
        t, ones = pad_same(t, layer.pool_size, layer.strides), pad_same(ones, layer.pool_size, layer.strides)
    expected = F.avg_pool2d(t, layer.pool_size, layer.strides) / F.avg_pool2d(ones, layer.pool_size, layer.strides)
    check(layer(x), nhwc(expected))


def test_global_average_pooling2d_matches_torch_adaptive_avg_pool():
    x = randn(2, 5, 4, 3)
    expected = F.adaptive_avg_pool2d(nchw(x), 1).flatten(1).numpy()
    check(layers.GlobalAveragePooling2D(**F64)(x), expected)


# --------------------------------------------------------------------------- normalization, dense, the rest

def test_batch_normalization_inference_matches_torch():
    layer = layers.BatchNormalization(epsilon=1e-3, **F64)
    layer.build((None, 3))
    weights = [randn(3, seed=1), randn(3, seed=2), randn(3, seed=3), np.abs(randn(3, seed=4)) + 0.1]
    layer.set_weights(weights)
    x = randn(2, 4, 4, 3)
    gamma, beta, mean, variance = (torch.from_numpy(w) for w in weights)
    expected = F.batch_norm(nchw(x), mean, variance, gamma, beta, training=False, eps=1e-3)
    check(layer(x), nhwc(expected))


def test_batch_normalization_training_matches_torch_output_and_moving_mean():
    layer = layers.BatchNormalization(momentum=0.9, **F64)
    x = 2.0 + randn(4, 3, 3, 2)
    y = layer(x, training=True)
    running_mean, running_var = torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64)
    expected = F.batch_norm(nchw(x), running_mean, running_var, torch.ones(2, dtype=torch.float64),
                            torch.zeros(2, dtype=torch.float64), training=True, momentum=0.1, eps=1e-3)
    check(y, nhwc(expected))
    check(layer.moving_mean, running_mean.numpy())
    # torch moves toward the unbiased variance, Keras 3 (and convlab) toward the biased one
    biased = x.reshape(-1, 2).var(axis=0)
    check(layer.moving_variance, 0.9 + 0.1 * biased)


def test_dense_matches_torch_linear():
    layer = layers.Dense(4, **F64)
    x = randn(3, 5)
    layer(x)
    kernel, bias = layer.kernel.numpy(), randn(4, seed=1)
    layer.set_weights([kernel, bias])
    check(layer(x), F.linear(torch.from_numpy(x), torch.from_numpy(kernel.T.copy()), torch.from_numpy(bias)).numpy())


@pytest.mark.parametrize("name, torch_fn", [
    ("relu", F.relu), ("sigmoid", torch.sigmoid), ("tanh", torch.tanh),
    ("softmax", lambda t: F.softmax(t, dim=-1)), ("log_softmax", lambda t: F.log_softmax(t, dim=-1)),
])
def test_activations_match_torch(name, torch_fn):
    x = 5 * randn(4, 6)
    check(layers.Activation(name, **F64)(x), torch_fn(torch.from_numpy(x)).numpy())


def test_flatten_rescaling_zero_padding_add_concatenate_dropout_match_torch():
    x, other = randn(2, 3, 4, 2), randn(2, 3, 4, 2, seed=1)
    tx, tother = torch.from_numpy(x), torch.from_numpy(other)
    check(layers.Flatten(**F64)(x), torch.flatten(tx, 1).numpy())
    check(layers.Rescaling(1 / 255, offset=-0.5, **F64)(x), (tx / 255 - 0.5).numpy())
    check(layers.ZeroPadding2D(((1, 2), (0, 3)), **F64)(x), nhwc(F.pad(nchw(x), (0, 3, 1, 2))))
    check(layers.Add(**F64)([x, other]), torch.add(tx, tother).numpy())
    check(layers.Concatenate(**F64)([x, other]), torch.cat([tx, tother], dim=-1).numpy())
    check(layers.Dropout(0.5, **F64)(x), F.dropout(tx, 0.5, training=False).numpy())
