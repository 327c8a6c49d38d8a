"""Every convlab.kernels function agrees with the float64 reference in tests/reference.py.

float64 results must match to 1e-10 and float32 results to 1e-4, both relative to the
largest magnitude of the expected array. float32 inputs are rounded first and the
reference is evaluated on the rounded values, so only the kernel's arithmetic is judged.

Every test runs on every `device` (tests/devices.py): the CPU kernels, the CUDA kernels'
two variants on the host executor, and on a GPU. Inputs are built in numpy and moved with
device.array; results come back with device.numpy before they are judged.
"""

import numpy as np
import pytest

import reference
from convlab import kernels
from convlab.testing import assert_close

RTOL = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-4}


@pytest.fixture(params=[np.float64, np.float32], ids=["float64", "float32"])
def dtype(request):
    return np.dtype(request.param)


def random(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def check(device, actual, expected, dtype, name="result", scale=0.0):
    """An array of the device's type and of `dtype`, within RTOL of max(|expected|, scale):
    `scale` is the size of the terms that cancel to give `expected`, where they are much
    larger than the result."""
    assert isinstance(actual, device.array_type), (
        f"{name}: got {type(actual).__name__}, expected a {device.array_type.__module__}.ndarray on {device.name}")
    assert actual.dtype == dtype, f"{name}: dtype {actual.dtype}, expected {dtype}"
    assert_close(device.numpy(actual), expected, rtol=RTOL[dtype], atol=RTOL[dtype] * scale, name=name)


# --------------------------------------------------------------------------- conv2d

CONV_CASES = [
    # (N, H, W, cin, cout, (kh, kw), strides, padding, dilation)
    pytest.param(2, 7, 9, 3, 4, (3, 3), 1, "valid", 1, id="3x3-valid"),
    pytest.param(1, 9, 7, 2, 5, (3, 3), 2, "same", 1, id="stride2-same-batch1"),
    pytest.param(2, 10, 11, 3, 2, (3, 3), 3, "same", 1, id="stride3-same"),
    pytest.param(1, 11, 10, 2, 3, (3, 2), 3, "valid", 1, id="stride3-valid-2x3kernel"),
    pytest.param(2, 9, 8, 2, 3, (3, 3), 1, "same", 2, id="dilation2-same"),
    pytest.param(1, 11, 9, 3, 2, (2, 3), (2, 1), "valid", 2, id="dilation2-valid-asymmetric-strides"),
    pytest.param(2, 6, 7, 3, 2, (3, 3), 2, ((1, 2), (0, 3)), 1, id="explicit-asymmetric"),
    pytest.param(1, 5, 5, 1, 1, (3, 3), 1, "same", 1, id="single-channel"),
    pytest.param(3, 5, 6, 4, 5, (1, 1), 1, "valid", 1, id="1x1"),
    pytest.param(1, 5, 6, 2, 3, (5, 6), 1, "valid", 1, id="kernel-as-large-as-input"),
    pytest.param(1, 4, 5, 2, 2, (5, 5), 2, "same", 1, id="kernel-larger-than-input-same"),
    pytest.param(2, 12, 11, 19, 37, (3, 3), 1, "same", 1, id="many-channels"),
    pytest.param(1, 13, 13, 5, 3, (7, 7), 2, "same", 1, id="7x7-stride2"),
]


@pytest.mark.parametrize("n, h, w, cin, cout, ksize, strides, padding, dilation", CONV_CASES)
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no-bias"])
def test_conv2d_forward_matches_reference(device, rng, dtype, n, h, w, cin, cout, ksize, strides, padding, dilation, with_bias):
    x = random(rng, (n, h, w, cin), dtype)
    kernel = random(rng, (*ksize, cin, cout), dtype)
    bias = random(rng, (cout,), dtype) if with_bias else None
    y = kernels.conv2d_forward(*device.arrays(x, kernel, bias), strides, padding, dilation)
    check(device, y, reference.conv2d_forward(x, kernel, bias, strides, padding, dilation), dtype)


@pytest.mark.parametrize("n, h, w, cin, cout, ksize, strides, padding, dilation", CONV_CASES)
def test_conv2d_backward_input_matches_reference(device, rng, dtype, n, h, w, cin, cout, ksize, strides, padding, dilation):
    kernel = random(rng, (*ksize, cin, cout), dtype)
    out_hw, _ = reference.window_geometry((h, w), ksize, strides, padding, dilation)
    grad_y = random(rng, (n, *out_hw, cout), dtype)
    grad_x = kernels.conv2d_backward_input(*device.arrays(grad_y, kernel), (n, h, w, cin), strides, padding, dilation)
    check(device, grad_x, reference.conv2d_backward_input(grad_y, kernel, (n, h, w, cin), strides, padding, dilation), dtype)


@pytest.mark.parametrize("n, h, w, cin, cout, ksize, strides, padding, dilation", CONV_CASES)
def test_conv2d_backward_kernel_matches_reference(device, rng, dtype, n, h, w, cin, cout, ksize, strides, padding, dilation):
    x = random(rng, (n, h, w, cin), dtype)
    out_hw, _ = reference.window_geometry((h, w), ksize, strides, padding, dilation)
    grad_y = random(rng, (n, *out_hw, cout), dtype)
    kernel_shape = (*ksize, cin, cout)
    grad_kernel = kernels.conv2d_backward_kernel(*device.arrays(x, grad_y), kernel_shape, strides, padding, dilation)
    check(device, grad_kernel, reference.conv2d_backward_kernel(x, grad_y, kernel_shape, strides, padding, dilation), dtype)


@pytest.mark.parametrize("shape", [(2, 5, 4, 3), (1, 1, 1, 7), (6, 9), (3, 4, 1)])
def test_conv2d_backward_bias_sums_all_but_the_channel_axis(device, rng, dtype, shape):
    grad_y = random(rng, shape, dtype)
    check(device, kernels.conv2d_backward_bias(device.array(grad_y)), reference.conv2d_backward_bias(grad_y), dtype)


# --------------------------------------------------------------------------- conv2d_transpose

TRANSPOSE_CASES = [
    # (N, H, W, cin, cout, (kh, kw), strides, padding, output_padding, dilation)
    pytest.param(2, 4, 5, 3, 2, (3, 3), 2, "same", None, 1, id="stride2-same"),
    pytest.param(1, 5, 4, 2, 3, (3, 3), 2, "valid", None, 1, id="stride2-valid"),
    pytest.param(1, 3, 4, 2, 2, (2, 2), 3, "valid", None, 1, id="stride-larger-than-kernel"),
    pytest.param(2, 4, 3, 2, 3, (4, 3), 2, "same", None, 1, id="even-kernel-same"),
    pytest.param(1, 4, 4, 3, 2, (3, 3), 3, "same", None, 1, id="stride3-same"),
    pytest.param(1, 5, 5, 1, 1, (3, 3), 1, "same", None, 1, id="stride1-single-channel"),
    pytest.param(1, 4, 5, 2, 2, (3, 3), 2, "same", 1, 1, id="output-padding-1-same"),
    pytest.param(2, 3, 4, 2, 3, (3, 2), (2, 3), "valid", (1, 2), 1, id="output-padding-asymmetric-valid"),
    pytest.param(1, 4, 3, 2, 1, (4, 4), 2, "same", 0, 1, id="output-padding-0-even-kernel"),
    pytest.param(1, 3, 3, 2, 2, (2, 2), 4, "same", 3, 1, id="output-padding-beyond-kernel"),
    pytest.param(2, 4, 4, 2, 2, (3, 3), 1, "same", None, 2, id="dilation2-same"),
    pytest.param(1, 3, 4, 2, 2, (3, 2), 2, "valid", None, 2, id="dilation2-valid"),
    pytest.param(2, 5, 6, 17, 9, (3, 3), 2, "same", None, 1, id="many-channels"),
]


def transpose_output_shape(n, h, w, cout, ksize, strides, padding, output_padding, dilation):
    return (n, *reference.conv2d_transpose_output_hw((h, w), ksize, strides, padding, output_padding, dilation), cout)


@pytest.mark.parametrize("n, h, w, cin, cout, ksize, strides, padding, output_padding, dilation", TRANSPOSE_CASES)
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no-bias"])
def test_conv2d_transpose_forward_matches_reference(device, rng, dtype, n, h, w, cin, cout, ksize, strides, padding, output_padding, dilation, with_bias):
    x = random(rng, (n, h, w, cin), dtype)
    kernel = random(rng, (*ksize, cout, cin), dtype)
    bias = random(rng, (cout,), dtype) if with_bias else None
    y = kernels.conv2d_transpose_forward(*device.arrays(x, kernel, bias), strides, padding, output_padding, dilation)
    expected = reference.conv2d_transpose_forward(x, kernel, bias, strides, padding, output_padding, dilation)
    check(device, y, expected, dtype)


@pytest.mark.parametrize("n, h, w, cin, cout, ksize, strides, padding, output_padding, dilation", TRANSPOSE_CASES)
def test_conv2d_transpose_backward_input_matches_reference(device, rng, dtype, n, h, w, cin, cout, ksize, strides, padding, output_padding, dilation):
    kernel = random(rng, (*ksize, cout, cin), dtype)
    grad_y = random(rng, transpose_output_shape(n, h, w, cout, ksize, strides, padding, output_padding, dilation), dtype)
    args = ((n, h, w, cin), strides, padding, output_padding, dilation)
    grad_x = kernels.conv2d_transpose_backward_input(*device.arrays(grad_y, kernel), *args)
    check(device, grad_x, reference.conv2d_transpose_backward_input(grad_y, kernel, *args), dtype)


@pytest.mark.parametrize("n, h, w, cin, cout, ksize, strides, padding, output_padding, dilation", TRANSPOSE_CASES)
def test_conv2d_transpose_backward_kernel_matches_reference(device, rng, dtype, n, h, w, cin, cout, ksize, strides, padding, output_padding, dilation):
    x = random(rng, (n, h, w, cin), dtype)
    grad_y = random(rng, transpose_output_shape(n, h, w, cout, ksize, strides, padding, output_padding, dilation), dtype)
    args = ((*ksize, cout, cin), strides, padding, output_padding, dilation)
    grad_kernel = kernels.conv2d_transpose_backward_kernel(*device.arrays(x, grad_y), *args)
    check(device, grad_kernel, reference.conv2d_transpose_backward_kernel(x, grad_y, *args), dtype)


# --------------------------------------------------------------------------- depthwise and separable

DEPTHWISE_CASES = [
    # (N, H, W, cin, depth_multiplier, (kh, kw), strides, padding, dilation)
    pytest.param(2, 7, 6, 3, 1, (3, 3), 1, "valid", 1, id="dm1-valid"),
    pytest.param(1, 8, 9, 2, 2, (3, 3), 2, "same", 1, id="dm2-stride2-same"),
    pytest.param(2, 10, 7, 3, 3, (3, 2), 3, "same", 1, id="dm3-stride3-same"),
    pytest.param(1, 9, 9, 2, 2, (3, 3), 1, "same", 2, id="dm2-dilation2"),
    pytest.param(1, 7, 8, 1, 3, (2, 3), (1, 2), ((2, 0), (1, 1)), 1, id="single-channel-explicit"),
    pytest.param(2, 6, 5, 13, 1, (5, 5), 1, "same", 1, id="many-channels-5x5"),
    pytest.param(1, 5, 5, 4, 2, (5, 5), 1, "valid", 1, id="kernel-as-large-as-input"),
]


@pytest.mark.parametrize("n, h, w, cin, dm, ksize, strides, padding, dilation", DEPTHWISE_CASES)
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no-bias"])
def test_depthwise_conv2d_forward_matches_reference(device, rng, dtype, n, h, w, cin, dm, ksize, strides, padding, dilation, with_bias):
    x = random(rng, (n, h, w, cin), dtype)
    kernel = random(rng, (*ksize, cin, dm), dtype)
    bias = random(rng, (cin * dm,), dtype) if with_bias else None
    y = kernels.depthwise_conv2d_forward(*device.arrays(x, kernel, bias), strides, padding, dilation)
    check(device, y, reference.depthwise_conv2d_forward(x, kernel, bias, strides, padding, dilation), dtype)


@pytest.mark.parametrize("n, h, w, cin, dm, ksize, strides, padding, dilation", DEPTHWISE_CASES)
def test_depthwise_conv2d_backward_input_matches_reference(device, rng, dtype, n, h, w, cin, dm, ksize, strides, padding, dilation):
    kernel = random(rng, (*ksize, cin, dm), dtype)
    out_hw, _ = reference.window_geometry((h, w), ksize, strides, padding, dilation)
    grad_y = random(rng, (n, *out_hw, cin * dm), dtype)
    args = ((n, h, w, cin), strides, padding, dilation)
    grad_x = kernels.depthwise_conv2d_backward_input(*device.arrays(grad_y, kernel), *args)
    check(device, grad_x, reference.depthwise_conv2d_backward_input(grad_y, kernel, *args), dtype)


@pytest.mark.parametrize("n, h, w, cin, dm, ksize, strides, padding, dilation", DEPTHWISE_CASES)
def test_depthwise_conv2d_backward_kernel_matches_reference(device, rng, dtype, n, h, w, cin, dm, ksize, strides, padding, dilation):
    x = random(rng, (n, h, w, cin), dtype)
    out_hw, _ = reference.window_geometry((h, w), ksize, strides, padding, dilation)
    grad_y = random(rng, (n, *out_hw, cin * dm), dtype)
    args = ((*ksize, cin, dm), strides, padding, dilation)
    grad_kernel = kernels.depthwise_conv2d_backward_kernel(*device.arrays(x, grad_y), *args)
    check(device, grad_kernel, reference.depthwise_conv2d_backward_kernel(x, grad_y, *args), dtype)


@pytest.mark.parametrize(
    "n, h, w, cin, dm, cout, strides, padding, dilation, with_bias",
    [
        pytest.param(2, 7, 8, 3, 1, 4, 1, "valid", 1, True, id="dm1-valid"),
        pytest.param(1, 9, 7, 2, 2, 5, 2, "same", 1, False, id="dm2-stride2-same"),
        pytest.param(1, 8, 8, 3, 3, 2, 1, "same", 2, True, id="dm3-dilation2"),
        pytest.param(1, 6, 7, 1, 1, 1, 3, "same", 1, True, id="single-channel-stride3"),
    ],
)
def test_separable_conv2d_forward_matches_reference(device, rng, dtype, n, h, w, cin, dm, cout, strides, padding, dilation, with_bias):
    x = random(rng, (n, h, w, cin), dtype)
    depthwise_kernel = random(rng, (3, 3, cin, dm), dtype)
    pointwise_kernel = random(rng, (1, 1, cin * dm, cout), dtype)
    bias = random(rng, (cout,), dtype) if with_bias else None
    args = (bias, strides, padding, dilation)
    y = kernels.separable_conv2d_forward(*device.arrays(x, depthwise_kernel, pointwise_kernel, bias), *args[1:])
    check(device, y, reference.separable_conv2d_forward(x, depthwise_kernel, pointwise_kernel, *args), dtype)


# --------------------------------------------------------------------------- pooling

POOL_CASES = [
    # (N, H, W, C, pool_size, strides, padding)
    pytest.param(2, 6, 8, 3, 2, None, "valid", id="2x2-default-strides"),
    pytest.param(1, 7, 7, 2, 3, 2, "same", id="3x3-stride2-same"),
    pytest.param(2, 9, 8, 2, 3, 3, "same", id="3x3-stride3-same"),
    pytest.param(1, 7, 9, 3, (2, 3), (1, 2), "same", id="2x3-asymmetric"),
    pytest.param(1, 8, 7, 1, 3, 1, "valid", id="single-channel-overlapping"),
    pytest.param(1, 5, 6, 2, 2, 2, "same", id="2x2-same-odd-height"),
    pytest.param(2, 6, 6, 2, 3, 2, ((1, 1), (1, 0)), id="explicit"),
    pytest.param(1, 5, 5, 17, 5, 1, "same", id="5x5-stride1-same-many-channels"),
    pytest.param(1, 3, 4, 2, (3, 4), None, "valid", id="window-as-large-as-input"),
]


@pytest.mark.parametrize("n, h, w, c, pool_size, strides, padding", POOL_CASES)
def test_max_pool2d_forward_matches_reference(device, rng, dtype, n, h, w, c, pool_size, strides, padding):
    x = random(rng, (n, h, w, c), dtype)
    y = kernels.max_pool2d_forward(device.array(x), pool_size, strides, padding)
    check(device, y, reference.max_pool2d_forward(x, pool_size, strides, padding), dtype)


@pytest.mark.parametrize("n, h, w, c, pool_size, strides, padding", POOL_CASES)
def test_max_pool2d_backward_matches_reference(device, rng, dtype, n, h, w, c, pool_size, strides, padding):
    x = random(rng, (n, h, w, c), dtype)
    out_shape = reference.max_pool2d_forward(x, pool_size, strides, padding).shape
    grad_y = random(rng, out_shape, dtype)
    grad_x = kernels.max_pool2d_backward(*device.arrays(x, grad_y), pool_size, strides, padding)
    check(device, grad_x, reference.max_pool2d_backward(x, grad_y, pool_size, strides, padding), dtype)


@pytest.mark.parametrize("n, h, w, c, pool_size, strides, padding", POOL_CASES)
def test_avg_pool2d_forward_matches_reference(device, rng, dtype, n, h, w, c, pool_size, strides, padding):
    x = random(rng, (n, h, w, c), dtype)
    y = kernels.avg_pool2d_forward(device.array(x), pool_size, strides, padding)
    check(device, y, reference.avg_pool2d_forward(x, pool_size, strides, padding), dtype)


@pytest.mark.parametrize("n, h, w, c, pool_size, strides, padding", POOL_CASES)
def test_avg_pool2d_backward_matches_reference(device, rng, dtype, n, h, w, c, pool_size, strides, padding):
    input_shape = (n, h, w, c)
    out_shape = reference.avg_pool2d_forward(np.zeros(input_shape), pool_size, strides, padding).shape
    grad_y = random(rng, out_shape, dtype)
    grad_x = kernels.avg_pool2d_backward(device.array(grad_y), input_shape, pool_size, strides, padding)
    check(device, grad_x, reference.avg_pool2d_backward(grad_y, input_shape, pool_size, strides, padding), dtype)


@pytest.mark.parametrize("shape", [(2, 5, 4, 3), (1, 1, 1, 1), (3, 7, 1, 9)])
def test_global_avg_pool2d_forward_and_backward_match_reference(device, rng, dtype, shape):
    x = random(rng, shape, dtype)
    check(device, kernels.global_avg_pool2d_forward(device.array(x)), reference.global_avg_pool2d_forward(x), dtype, "forward")
    grad_y = random(rng, (shape[0], shape[3]), dtype)
    check(device, kernels.global_avg_pool2d_backward(device.array(grad_y), shape), reference.global_avg_pool2d_backward(grad_y, shape), dtype, "backward")


@pytest.mark.parametrize(
    "pool_size, strides, padding",
    [(2, None, "valid"), (3, 1, "valid"), (3, 1, "same"), (3, 2, "same"), ((2, 3), (2, 1), "same")],
)
def test_max_pool2d_gives_each_tie_to_the_first_maximum_of_the_window(device, dtype, pool_size, strides, padding):
    # A constant image: every cell of every window ties, so the gradient of each window
    # lands on its first real cell in row-major order (padded cells never win).
    x = np.full((1, 6, 7, 2), 1.5, dtype=dtype)
    out_shape = reference.max_pool2d_forward(x, pool_size, strides, padding).shape
    grad_y = np.arange(1, np.prod(out_shape) + 1, dtype=dtype).reshape(out_shape)
    y = kernels.max_pool2d_forward(device.array(x), pool_size, strides, padding)
    check(device, y, np.full(out_shape, 1.5), dtype, "forward")
    grad_x = kernels.max_pool2d_backward(*device.arrays(x, grad_y), pool_size, strides, padding)
    check(device, grad_x, reference.max_pool2d_backward(x, grad_y, pool_size, strides, padding), dtype, "backward")


def test_max_pool2d_ties_among_small_integers_follow_the_first_maximum_rule(device, rng, dtype):
    # Random patterns of 0, 1 and 2: many windows hold several equal maxima at varied places.
    x = rng.integers(0, 3, (2, 9, 8, 3)).astype(dtype)
    grad_y = random(rng, reference.max_pool2d_forward(x, 3, 2, "same").shape, dtype)
    grad_x = kernels.max_pool2d_backward(*device.arrays(x, grad_y), 3, 2, "same")
    check(device, grad_x, reference.max_pool2d_backward(x, grad_y, 3, 2, "same"), dtype)


def test_max_pool2d_window_of_negative_infinities_routes_gradient_to_its_first_cell(device, dtype):
    # -inf is a real value: it must win over the padding, and the gradient must land
    # on the first cell, not be dropped (or written out of bounds).
    x = np.full((1, 5, 5, 1), -np.inf, dtype=dtype)
    y = kernels.max_pool2d_forward(device.array(x), 3, 2, "same")
    check(device, y, np.full((1, 3, 3, 1), -np.inf), dtype, "forward")
    grad_y = np.arange(1, 10, dtype=dtype).reshape(1, 3, 3, 1)
    grad_x = kernels.max_pool2d_backward(*device.arrays(x, grad_y), 3, 2, "same")
    check(device, grad_x, reference.max_pool2d_backward(x, grad_y, 3, 2, "same"), dtype, "backward")


def test_max_pool2d_propagates_nan(device, rng, dtype):
    x = random(rng, (2, 8, 8, 3), dtype)
    x[0, 1, 2, 0] = np.nan
    x[1, 5, 5, 2] = np.nan
    x[1, 0, 7, 1] = np.nan
    y = kernels.max_pool2d_forward(device.array(x), 3, 2, "same")
    expected = reference.max_pool2d_forward(x, 3, 2, "same")
    assert np.isnan(expected).sum() >= 3
    check(device, y, expected, dtype)


def test_max_pool2d_routes_the_gradient_of_a_window_with_a_nan_to_the_nan(device, rng, dtype):
    # One NaN per non-overlapping window, placed after the true maximum.
    x = np.abs(random(rng, (1, 4, 4, 2), dtype))
    x[0, 0, 0, :] = 10.0
    x[0, 1, 1, :] = np.nan
    x[0, 3, 2, 1] = np.nan
    grad_y = random(rng, (1, 2, 2, 2), dtype)
    grad_x = kernels.max_pool2d_backward(*device.arrays(x, grad_y), 2)
    check(device, grad_x, reference.max_pool2d_backward(x, grad_y, 2), dtype)
    grad_x = device.numpy(grad_x)
    assert grad_x[0, 1, 1, 0] == grad_y[0, 0, 0, 0] and grad_x[0, 0, 0, 0] == 0


# --------------------------------------------------------------------------- batch normalization


@pytest.mark.parametrize("shape", [(4, 5, 3, 3), (8, 2), (3, 4, 5), (1, 1, 1, 6)])
@pytest.mark.parametrize("scale, center", [(True, True), (False, True), (True, False), (False, False)])
def test_batch_norm_forward_training_matches_reference_and_updates_moving_stats_in_place(device, rng, dtype, shape, scale, center):
    channels = shape[-1]
    x = (random(rng, shape, dtype) * 2 + 0.5).astype(dtype)
    gamma = random(rng, (channels,), dtype) if scale else None
    beta = random(rng, (channels,), dtype) if center else None
    moving_mean = random(rng, (channels,), dtype)
    moving_variance = rng.uniform(0.5, 2.0, channels).astype(dtype)
    before = (moving_mean.copy(), moving_variance.copy())
    moving_mean, moving_variance = device.arrays(moving_mean, moving_variance)
    mean_buffer, variance_buffer = moving_mean, moving_variance

    y, batch_mean, batch_variance = kernels.batch_norm_forward_training(
        *device.arrays(x, gamma, beta), moving_mean, moving_variance, momentum=0.9, epsilon=1e-3
    )
    expected = reference.batch_norm_forward_training(x, gamma, beta, *before, momentum=0.9, epsilon=1e-3)
    check(device, y, expected[0], dtype, "y")
    check(device, batch_mean, expected[1], dtype, "batch_mean")
    check(device, batch_variance, expected[2], dtype, "batch_variance")
    assert moving_mean is mean_buffer and moving_variance is variance_buffer
    check(device, moving_mean, expected[3], dtype, "moving_mean (updated in place)")
    check(device, moving_variance, expected[4], dtype, "moving_variance (updated in place)")


@pytest.mark.parametrize("momentum", [0.0, 0.5, 0.99, 1.0])
def test_batch_norm_moving_stats_follow_keras_momentum_rule(device, rng, momentum):
    x = rng.standard_normal((6, 3, 3, 4)) * 3 + 1
    moving_mean, moving_variance = device.arrays(np.zeros(4), np.ones(4))
    kernels.batch_norm_forward_training(device.array(x), None, None, moving_mean, moving_variance, momentum, 1e-3)
    rows = x.reshape(-1, 4)
    # moving = moving * momentum + batch_stat * (1 - momentum), with the biased variance.
    assert_close(device.numpy(moving_mean), rows.mean(axis=0) * (1 - momentum), rtol=1e-12)
    assert_close(device.numpy(moving_variance), momentum + rows.var(axis=0, ddof=0) * (1 - momentum), rtol=1e-12)


def test_batch_norm_float32_statistics_are_accurate_for_inputs_far_from_zero(device, rng):
    # Mean 10, spread 1: E[x^2] - E[x]^2 in float32 would lose three digits of the variance.
    x = (rng.standard_normal((8, 6, 6, 3)) + 10.0).astype(np.float32)
    moving_mean, moving_variance = device.arrays(np.zeros(3, np.float32), np.ones(3, np.float32))
    y, mean, variance = kernels.batch_norm_forward_training(device.array(x), None, None, moving_mean, moving_variance)
    expected = reference.batch_norm_forward_training(x, None, None, np.zeros(3), np.ones(3))
    check(device, variance, expected[2], np.dtype(np.float32), "batch_variance")
    check(device, y, expected[0], np.dtype(np.float32), "y")


@pytest.mark.parametrize("shape", [(4, 5, 3, 3), (8, 2), (3, 4, 5)])
@pytest.mark.parametrize("scale, center", [(True, True), (False, False)])
def test_batch_norm_forward_inference_matches_reference(device, rng, dtype, shape, scale, center):
    channels = shape[-1]
    x = random(rng, shape, dtype)
    gamma = random(rng, (channels,), dtype) if scale else None
    beta = random(rng, (channels,), dtype) if center else None
    moving_mean = random(rng, (channels,), dtype)
    moving_variance = rng.uniform(0.5, 2.0, channels).astype(dtype)
    y = kernels.batch_norm_forward_inference(*device.arrays(x, gamma, beta, moving_mean, moving_variance), epsilon=1e-3)
    check(device, y, reference.batch_norm_forward_inference(x, gamma, beta, moving_mean, moving_variance, 1e-3), dtype)


@pytest.mark.parametrize("shape", [(4, 5, 3, 3), (8, 2), (3, 4, 5), (2, 1, 1, 4)])
@pytest.mark.parametrize("scale", [True, False], ids=["gamma", "no-gamma"])
def test_batch_norm_backward_matches_reference(device, rng, dtype, shape, scale):
    channels = shape[-1]
    x = (random(rng, shape, dtype) * 2 + 0.5).astype(dtype)
    gamma = random(rng, (channels,), dtype) if scale else None
    rows = x.astype(np.float64).reshape(-1, channels)
    mean = rows.mean(axis=0).astype(dtype)
    variance = rows.var(axis=0).astype(dtype)
    grad_y = random(rng, shape, dtype)
    grad_x, grad_gamma, grad_beta = kernels.batch_norm_backward(*device.arrays(grad_y, x, gamma, mean, variance), epsilon=1e-3)
    expected = reference.batch_norm_backward(grad_y, x, gamma, mean, variance, 1e-3)
    # grad_x = gamma / std * (grad_y - mean(grad_y) - x_hat * mean(grad_y * x_hat)) cancels
    # almost to zero with few rows per channel; judge it against the size of its terms.
    terms = np.max(np.abs(grad_y.astype(np.float64) * (1.0 if gamma is None else gamma) / np.sqrt(variance + 1e-3)))
    check(device, grad_x, expected[0], dtype, "grad_x", scale=terms)
    check(device, grad_gamma, expected[1], dtype, "grad_gamma")
    check(device, grad_beta, expected[2], dtype, "grad_beta")


# --------------------------------------------------------------------------- geometry helpers and allocation


@pytest.mark.parametrize("batch", [None, 3])
def test_output_shape_helpers_match_reference_geometry(batch):
    for size, kernel, stride, padding, dilation in [(28, 3, 1, "valid", 1), (200, 3, 2, "same", 1), (13, 6, 5, "same", 1), (11, 3, 2, "valid", 2), (9, 3, 2, ((1, 2), (0, 1)), 1)]:
        out_hw, _ = reference.window_geometry((size, size + 1), (kernel, kernel), stride, padding, dilation)
        assert kernels.conv2d_output_shape((batch, size, size + 1, 3), kernel, 8, stride, padding, dilation) == (batch, *out_hw, 8)
    for size, pool, stride, padding in [(180, 3, 2, "same"), (26, 2, None, "valid"), (7, 3, 1, "same")]:
        out_hw, _ = reference.window_geometry((size, size), (pool, pool), stride or pool, padding)
        assert kernels.pool2d_output_shape((batch, size, size, 4), pool, stride, padding) == (batch, *out_hw, 4)
    for size, kernel, stride, padding, output_padding in [(25, 3, 2, "same", None), (4, 3, 2, "valid", None), (4, 2, 3, "valid", None), (4, 3, 2, "same", 1), (5, 4, 2, "same", 0)]:
        out_hw = reference.conv2d_transpose_output_hw((size, size), (kernel, kernel), stride, padding, output_padding)
        assert kernels.conv2d_transpose_output_shape((batch, size, size, 2), kernel, 5, stride, padding, output_padding) == (batch, *out_hw, 5)


def test_kernels_leave_their_inputs_unchanged(device, rng):
    x = rng.standard_normal((2, 6, 5, 3))
    kernel = rng.standard_normal((3, 3, 3, 4))
    grad_y = rng.standard_normal((2, 3, 3, 4))
    copies = [a.copy() for a in (x, kernel, grad_y)]
    x, kernel, grad_y = device.arrays(x, kernel, grad_y)
    arrays = [x, kernel, grad_y]
    kernels.conv2d_forward(x, kernel, None, 2, "same")
    kernels.conv2d_backward_input(grad_y, kernel, x.shape, 2, "same")
    kernels.conv2d_backward_kernel(x, grad_y, kernel.shape, 2, "same")
    kernels.conv2d_transpose_forward(grad_y, kernel, None, 2, "same")
    kernels.max_pool2d_backward(x, device.array(rng.standard_normal((2, 3, 3, 3))), 2, 2, "same")
    kernels.batch_norm_backward(x, x, None, x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2)))
    for array, copy in zip(arrays, copies):
        np.testing.assert_array_equal(device.numpy(array), copy)
