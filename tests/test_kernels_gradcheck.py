"""Every backward kernel is the gradient of its forward kernel: checked by finite differences.

Each test builds grad_fn from the backward kernels and hands it with the forward kernel to
convlab.testing.gradcheck, which compares it in float64 with central differences of
sum(forward(...) * g) for a random g. The last tests check gradcheck itself.

The kernel tests run on every `device` (tests/devices.py) through device.gradcheck: the
arrays gradcheck perturbs, and the upstream gradient, reach the kernels as arrays of the
device (on cpu and host-* the very numpy arrays gradcheck perturbs).
"""

import numpy as np
import pytest

from convlab import kernels
from convlab.testing import GradcheckError, gradcheck, numerical_gradient


def normal(rng, *shape):
    return rng.standard_normal(shape)


# --------------------------------------------------------------------------- conv2d


@pytest.mark.parametrize(
    "x_shape, kernel_size, cout, strides, padding, dilation",
    [
        pytest.param((2, 5, 5, 2), (3, 3), 3, 1, "valid", 1, id="valid"),
        pytest.param((1, 6, 5, 2), (3, 3), 2, 2, "same", 1, id="stride2-same"),
        pytest.param((1, 7, 6, 1), (2, 3), 2, 3, "same", 1, id="stride3-same"),
        pytest.param((1, 6, 6, 2), (3, 2), 2, 1, "same", 2, id="dilation2"),
        pytest.param((1, 5, 4, 2), (3, 3), 2, (2, 1), ((1, 0), (2, 1)), 1, id="explicit"),
    ],
)
def test_conv2d_backward_kernels_are_the_gradient_of_conv2d_forward(device, rng, x_shape, kernel_size, cout, strides, padding, dilation):
    x = normal(rng, *x_shape)
    kernel = normal(rng, *kernel_size, x_shape[3], cout)
    bias = normal(rng, cout)
    geometry = dict(strides=strides, padding=padding, dilation_rate=dilation)

    def forward(x, kernel, bias):
        return kernels.conv2d_forward(x, kernel, bias, **geometry)

    def backward(g, x, kernel, bias):
        return [
            kernels.conv2d_backward_input(g, kernel, x.shape, **geometry),
            kernels.conv2d_backward_kernel(x, g, kernel.shape, **geometry),
            kernels.conv2d_backward_bias(g),
        ]

    assert device.gradcheck(forward, [x, kernel, bias], backward)


# --------------------------------------------------------------------------- conv2d_transpose


@pytest.mark.parametrize(
    "x_shape, kernel_size, cout, strides, padding, output_padding, dilation",
    [
        pytest.param((2, 3, 4, 2), (3, 3), 2, 2, "same", None, 1, id="stride2-same"),
        pytest.param((1, 3, 3, 2), (3, 3), 3, 2, "valid", None, 1, id="stride2-valid"),
        pytest.param((1, 3, 2, 2), (2, 2), 2, 3, "valid", None, 1, id="stride-larger-than-kernel"),
        pytest.param((1, 3, 3, 2), (3, 2), 2, (2, 3), "same", (1, 2), 1, id="output-padding"),
        pytest.param((1, 3, 3, 1), (3, 3), 2, 1, "same", None, 2, id="dilation2"),
    ],
)
def test_conv2d_transpose_backward_kernels_are_the_gradient_of_its_forward(device, rng, x_shape, kernel_size, cout, strides, padding, output_padding, dilation):
    x = normal(rng, *x_shape)
    kernel = normal(rng, *kernel_size, cout, x_shape[3])
    bias = normal(rng, cout)
    geometry = dict(strides=strides, padding=padding, output_padding=output_padding, dilation_rate=dilation)

    def forward(x, kernel, bias):
        return kernels.conv2d_transpose_forward(x, kernel, bias, **geometry)

    def backward(g, x, kernel, bias):
        return [
            kernels.conv2d_transpose_backward_input(g, kernel, x.shape, **geometry),
            kernels.conv2d_transpose_backward_kernel(x, g, kernel.shape, **geometry),
            kernels.conv2d_backward_bias(g),
        ]

    assert device.gradcheck(forward, [x, kernel, bias], backward)


# --------------------------------------------------------------------------- depthwise and separable


@pytest.mark.parametrize(
    "x_shape, kernel_size, depth_multiplier, strides, padding, dilation",
    [
        pytest.param((2, 5, 5, 2), (3, 3), 1, 1, "valid", 1, id="dm1-valid"),
        pytest.param((1, 6, 5, 2), (3, 3), 2, 2, "same", 1, id="dm2-stride2-same"),
        pytest.param((1, 7, 7, 1), (3, 2), 3, 3, "same", 1, id="dm3-stride3"),
        pytest.param((1, 6, 6, 2), (3, 3), 2, 1, "same", 2, id="dilation2"),
        pytest.param((1, 4, 5, 2), (2, 2), 1, 1, ((0, 1), (1, 1)), 1, id="explicit"),
    ],
)
def test_depthwise_conv2d_backward_kernels_are_the_gradient_of_its_forward(device, rng, x_shape, kernel_size, depth_multiplier, strides, padding, dilation):
    x = normal(rng, *x_shape)
    kernel = normal(rng, *kernel_size, x_shape[3], depth_multiplier)
    bias = normal(rng, x_shape[3] * depth_multiplier)
    geometry = dict(strides=strides, padding=padding, dilation_rate=dilation)

    def forward(x, kernel, bias):
        return kernels.depthwise_conv2d_forward(x, kernel, bias, **geometry)

    def backward(g, x, kernel, bias):
        return [
            kernels.depthwise_conv2d_backward_input(g, kernel, x.shape, **geometry),
            kernels.depthwise_conv2d_backward_kernel(x, g, kernel.shape, **geometry),
            kernels.conv2d_backward_bias(g),
        ]

    assert device.gradcheck(forward, [x, kernel, bias], backward)


def test_separable_conv2d_gradient_is_depthwise_backward_composed_with_1x1_conv_backward(device, rng):
    x = normal(rng, 1, 5, 6, 2)
    depthwise_kernel = normal(rng, 3, 3, 2, 2)
    pointwise_kernel = normal(rng, 1, 1, 4, 3)
    bias = normal(rng, 3)
    geometry = dict(strides=2, padding="same", dilation_rate=1)

    def forward(x, depthwise_kernel, pointwise_kernel, bias):
        return kernels.separable_conv2d_forward(x, depthwise_kernel, pointwise_kernel, bias, **geometry)

    def backward(g, x, depthwise_kernel, pointwise_kernel, bias):
        middle = kernels.depthwise_conv2d_forward(x, depthwise_kernel, None, **geometry)
        grad_middle = kernels.conv2d_backward_input(g, pointwise_kernel, middle.shape)
        return [
            kernels.depthwise_conv2d_backward_input(grad_middle, depthwise_kernel, x.shape, **geometry),
            kernels.depthwise_conv2d_backward_kernel(x, grad_middle, depthwise_kernel.shape, **geometry),
            kernels.conv2d_backward_kernel(middle, g, pointwise_kernel.shape),
            kernels.conv2d_backward_bias(g),
        ]

    assert device.gradcheck(forward, [x, depthwise_kernel, pointwise_kernel, bias], backward)


# --------------------------------------------------------------------------- pooling

POOL_CASES = [
    pytest.param((2, 4, 6, 2), 2, None, "valid", id="2x2-valid"),
    pytest.param((1, 5, 5, 2), 3, 2, "same", id="3x3-stride2-same"),
    pytest.param((1, 7, 5, 1), 3, 3, "same", id="3x3-stride3-same"),
    pytest.param((1, 5, 6, 2), (2, 3), 1, "same", id="overlapping-same"),
    pytest.param((1, 5, 5, 1), 3, 2, ((1, 1), (0, 1)), id="explicit"),
]


@pytest.mark.parametrize("x_shape, pool_size, strides, padding", POOL_CASES)
def test_max_pool2d_backward_is_the_gradient_of_max_pool2d_forward(device, rng, x_shape, pool_size, strides, padding):
    # Distinct, well separated values: no window has two maxima within eps of each other.
    x = rng.permutation(np.prod(x_shape)).reshape(x_shape) * 0.01 + normal(rng, *x_shape) * 1e-4

    def forward(x):
        return kernels.max_pool2d_forward(x, pool_size, strides, padding)

    def backward(g, x):
        return [kernels.max_pool2d_backward(x, g, pool_size, strides, padding)]

    assert device.gradcheck(forward, [x], backward)


@pytest.mark.parametrize("x_shape, pool_size, strides, padding", POOL_CASES)
def test_avg_pool2d_backward_is_the_gradient_of_avg_pool2d_forward(device, rng, x_shape, pool_size, strides, padding):
    def forward(x):
        return kernels.avg_pool2d_forward(x, pool_size, strides, padding)

    def backward(g, x):
        return [kernels.avg_pool2d_backward(g, x.shape, pool_size, strides, padding)]

    assert device.gradcheck(forward, [normal(rng, *x_shape)], backward)


def test_global_avg_pool2d_backward_is_the_gradient_of_its_forward(device, rng):
    def backward(g, x):
        return [kernels.global_avg_pool2d_backward(g, x.shape)]

    assert device.gradcheck(kernels.global_avg_pool2d_forward, [normal(rng, 2, 3, 4, 3)], backward)


# --------------------------------------------------------------------------- batch normalization


@pytest.mark.parametrize("shape", [(3, 2, 2, 3), (5, 2), (2, 3, 2)])
def test_batch_norm_backward_is_the_gradient_of_the_training_forward(device, rng, shape):
    channels = shape[-1]
    x = normal(rng, *shape) * 2 + 0.5
    gamma, beta = normal(rng, channels), normal(rng, channels)

    def fresh_moving_statistics():
        return device.arrays(np.zeros(channels), np.ones(channels))

    def forward(x, gamma, beta):
        # Fresh moving statistics on every call: the in-place update must not leak.
        return kernels.batch_norm_forward_training(x, gamma, beta, *fresh_moving_statistics(), 0.9, 1e-3)[0]

    def backward(g, x, gamma, beta):
        _, mean, variance = kernels.batch_norm_forward_training(x, gamma, beta, *fresh_moving_statistics(), 0.9, 1e-3)
        return list(kernels.batch_norm_backward(g, x, gamma, mean, variance, 1e-3))

    assert device.gradcheck(forward, [x, gamma, beta], backward)


def test_batch_norm_backward_without_gamma_is_the_gradient_of_the_unscaled_forward(device, rng):
    x = normal(rng, 4, 2, 2, 2)

    def forward(x):
        return kernels.batch_norm_forward_training(x, None, None, *device.arrays(np.zeros(2), np.ones(2)), 0.9, 1e-3)[0]

    def backward(g, x):
        _, mean, variance = kernels.batch_norm_forward_training(x, None, None, *device.arrays(np.zeros(2), np.ones(2)), 0.9, 1e-3)
        return [kernels.batch_norm_backward(g, x, None, mean, variance, 1e-3)[0]]

    assert device.gradcheck(forward, [x], backward)


def test_batch_norm_inference_gradient_is_gamma_over_std(device, rng):
    # No inference backward kernel exists; the layer's backward is the affine map itself.
    x = normal(rng, 3, 2, 2, 2)
    gamma, beta = normal(rng, 2), normal(rng, 2)
    mean, variance = normal(rng, 2), rng.uniform(0.5, 2.0, 2)

    def forward(x):
        return kernels.batch_norm_forward_inference(x, *device.arrays(gamma, beta, mean, variance), 1e-3)

    assert device.gradcheck(forward, [x], lambda g, x: [device.numpy(g) * gamma / np.sqrt(variance + 1e-3)])


# --------------------------------------------------------------------------- gradcheck itself


def conv_case(rng):
    x, kernel = normal(rng, 1, 4, 4, 2), normal(rng, 3, 3, 2, 2)

    def forward(x, kernel):
        return kernels.conv2d_forward(x, kernel, None, 1, "same")

    def backward(g, x, kernel):
        return [kernels.conv2d_backward_input(g, kernel, x.shape, 1, "same"), kernels.conv2d_backward_kernel(x, g, kernel.shape, 1, "same")]

    return forward, backward, [x, kernel]


def test_gradcheck_detects_a_gradient_scaled_by_one_percent(device, rng):
    forward, backward, inputs = conv_case(rng)
    assert device.gradcheck(forward, inputs, backward)

    def scaled_kernel_gradient(g, x, kernel):
        grad_x, grad_kernel = backward(g, x, kernel)
        return [grad_x, grad_kernel * 1.01]

    with pytest.raises(GradcheckError, match=r"input 1 .*element \(.*analytic .*numeric .*max abs error .*max rel error"):
        device.gradcheck(forward, inputs, scaled_kernel_gradient)
    assert device.gradcheck(forward, inputs, scaled_kernel_gradient, raise_exception=False) is False


def test_gradcheck_error_is_an_assertion_error_naming_the_wrong_element(rng):
    x = normal(rng, 2, 3)

    def off_by_one_element(g, x):
        grad = g * np.cos(x)
        grad[1, 2] += 1e-3
        return [grad]

    with pytest.raises(AssertionError, match=r"input 0 .*element \(1, 2\)"):
        gradcheck(np.sin, [x], off_by_one_element)


def test_gradcheck_skips_inputs_whose_gradient_is_none(rng):
    x, w = normal(rng, 3), normal(rng, 3)
    assert gradcheck(lambda x, w: x * w, [x, w], lambda g, x, w: [g * w, None])
    with pytest.raises(GradcheckError, match="input 1"):
        gradcheck(lambda x, w: x * w, [x, w], lambda g, x, w: [None, g * x * 2])


def test_gradcheck_rejects_float32_inputs_with_type_error(rng):
    forward, backward, (x, kernel) = conv_case(rng)
    with pytest.raises(TypeError, match="float64"):
        gradcheck(forward, [x.astype(np.float32), kernel.astype(np.float32)], backward)
    with pytest.raises(TypeError, match="float64"):
        gradcheck(forward, [x, kernel.astype(np.float32)], backward)


def test_gradcheck_leaves_its_inputs_unchanged(device, rng):
    forward, backward, inputs = conv_case(rng)
    copies = [a.copy() for a in inputs]
    device.gradcheck(forward, inputs, backward)
    for array, copy in zip(inputs, copies):
        np.testing.assert_array_equal(array, copy)


def test_gradcheck_max_elements_checks_only_that_many_elements_per_input(rng):
    calls = []

    def counting_square(x):
        calls.append(1)
        return x**2

    x = normal(rng, 50)
    assert gradcheck(counting_square, [x], lambda g, x: [2 * x * g], max_elements=7)
    assert len(calls) == 1 + 2 * 7  # one evaluation for the output shape, two per element
    # A gradient wrong everywhere is still caught from the sample.
    with pytest.raises(GradcheckError):
        gradcheck(counting_square, [x], lambda g, x: [2.02 * x * g], max_elements=7)


def test_numerical_gradient_of_a_matrix_product_matches_the_closed_form(rng):
    a, b, g = normal(rng, 3, 4), normal(rng, 4, 2), normal(rng, 3, 2)
    grad_a, grad_b = numerical_gradient(lambda a, b: a @ b, [a, b], g)
    np.testing.assert_allclose(grad_a, g @ b.T, rtol=0, atol=1e-8)
    np.testing.assert_allclose(grad_b, a.T @ g, rtol=0, atol=1e-8)


def test_gradcheck_uses_convlab_autograd_when_no_grad_fn_is_given(rng):
    pytest.importorskip("convlab.autograd")
    a, b = normal(rng, 2, 3), normal(rng, 2, 3)
    assert gradcheck(lambda a, b: a * b + a, [a, b])


def test_gradcheck_accepts_a_scalar_output_and_catches_a_wrong_factor(rng):
    x = normal(rng, 4)
    assert gradcheck(lambda x: np.sum(x**2), [x], lambda g, x: [2 * x * g])
    with pytest.raises(GradcheckError):
        gradcheck(lambda x: np.sum(x**2), [x], lambda g, x: [x * g])
