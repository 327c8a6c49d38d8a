"""Every differentiable op's backward against central finite differences (float64, CPU).

Each test is a claim that convlab.autograd, through that op, computes the true gradient
with respect to every input (activations and weights alike).
"""

import numpy as np
import pytest

from convlab import ops
from convlab.autograd import Tensor
from convlab.testing import gradcheck


def fresh(fn):
    """fn, with its output copied out of its inputs' memory.

    reshape, flatten and basic slicing return numpy views of their input, and gradcheck
    perturbs the input arrays in place between the f(x + eps) and f(x - eps) calls: a view
    taken by the first call would show the second perturbation too. Multiplying by 1.0
    copies without changing any gradient.
    """
    return lambda *args: ops.multiply(fn(*args), 1.0)


def randn(*shape, seed=0):
    return np.random.default_rng(seed + sum(shape)).standard_normal(shape)


# --------------------------------------------------------------------------- convolutions

@pytest.mark.parametrize("strides, padding, dilation_rate", [
    (1, "valid", 1), (2, "same", 1), ((2, 1), "valid", 1), (1, "same", 2), (1, ((1, 0), (2, 1)), 1),
])
def test_conv2d_gradients_match_finite_differences(strides, padding, dilation_rate):
    x, kernel, bias = randn(2, 6, 5, 3), randn(3, 2, 3, 4, seed=1), randn(4, seed=2)
    assert gradcheck(lambda x, k, b: ops.conv2d(x, k, b, strides, padding, dilation_rate), [x, kernel, bias])


def test_conv2d_without_bias_gradients_match_finite_differences():
    assert gradcheck(lambda x, k: ops.conv2d(x, k, padding="same"), [randn(1, 4, 4, 2), randn(3, 3, 2, 3, seed=1)])


@pytest.mark.parametrize("strides, padding, output_padding", [
    (1, "valid", None), (2, "same", None), (2, "valid", None), (2, "same", 1), (3, "valid", 2),
])
def test_conv2d_transpose_gradients_match_finite_differences(strides, padding, output_padding):
    x, kernel, bias = randn(2, 3, 4, 3), randn(3, 3, 2, 3, seed=1), randn(2, seed=2)
    assert gradcheck(lambda x, k, b: ops.conv2d_transpose(x, k, b, strides, padding, output_padding),
                     [x, kernel, bias])


@pytest.mark.parametrize("strides, padding, depth_multiplier", [(1, "valid", 1), (2, "same", 2), (1, "same", 3)])
def test_depthwise_conv2d_gradients_match_finite_differences(strides, padding, depth_multiplier):
    x = randn(2, 5, 5, 3)
    kernel, bias = randn(3, 3, 3, depth_multiplier, seed=1), randn(3 * depth_multiplier, seed=2)
    assert gradcheck(lambda x, k, b: ops.depthwise_conv2d(x, k, b, strides, padding), [x, kernel, bias])


@pytest.mark.parametrize("strides, padding, depth_multiplier", [(1, "same", 1), (2, "same", 2), (1, "valid", 2)])
def test_separable_conv2d_gradients_match_finite_differences(strides, padding, depth_multiplier):
    x = randn(2, 5, 5, 2)
    depthwise = randn(3, 3, 2, depth_multiplier, seed=1)
    pointwise = randn(1, 1, 2 * depth_multiplier, 3, seed=2)
    bias = randn(3, seed=3)
    assert gradcheck(lambda x, d, p, b: ops.separable_conv2d(x, d, p, b, strides, padding),
                     [x, depthwise, pointwise, bias])


def test_separable_conv2d_equals_depthwise_then_pointwise():
    x, depthwise, pointwise = randn(2, 6, 6, 2), randn(3, 3, 2, 2, seed=1), randn(1, 1, 4, 5, seed=2)
    fused = ops.separable_conv2d(x, depthwise, pointwise, strides=2, padding="same")
    composed = ops.conv2d(ops.depthwise_conv2d(x, depthwise, strides=2, padding="same"), pointwise)
    np.testing.assert_allclose(fused.numpy(), composed.numpy(), rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- pooling

@pytest.mark.parametrize("pool_size, strides, padding", [(2, None, "valid"), (3, 2, "same"), (2, 1, "same"), ((2, 3), None, "valid")])
def test_max_pool2d_gradients_match_finite_differences(pool_size, strides, padding):
    assert gradcheck(lambda x: ops.max_pool2d(x, pool_size, strides, padding), [randn(2, 5, 6, 3)])


@pytest.mark.parametrize("pool_size, strides, padding", [(2, None, "valid"), (3, 2, "same"), (2, 1, "same")])
def test_avg_pool2d_gradients_match_finite_differences(pool_size, strides, padding):
    assert gradcheck(lambda x: ops.avg_pool2d(x, pool_size, strides, padding), [randn(2, 5, 6, 3)])


def test_global_avg_pool2d_gradients_match_finite_differences():
    assert gradcheck(ops.global_avg_pool2d, [randn(2, 3, 4, 5)])


# --------------------------------------------------------------------------- batch normalization

def _moving(channels):
    return np.zeros(channels), np.ones(channels)


@pytest.mark.parametrize("shape", [(4, 3, 3, 2), (6, 3)])
def test_batch_norm_training_gradients_match_finite_differences(shape):
    channels = shape[-1]
    mean, variance = _moving(channels)
    assert gradcheck(
        lambda x, g, b: ops.batch_norm(x, g, b, mean, variance, training=True),
        [randn(*shape), randn(channels, seed=1), randn(channels, seed=2)],
    )


def test_batch_norm_training_without_scale_and_center_gradients_match_finite_differences():
    mean, variance = _moving(2)
    assert gradcheck(lambda x: ops.batch_norm(x, None, None, mean, variance, training=True), [randn(3, 2, 2, 2)])


def test_batch_norm_inference_gradients_match_finite_differences():
    mean, variance = randn(3, seed=4), np.abs(randn(3, seed=5)) + 0.5
    assert gradcheck(
        lambda x, g, b: ops.batch_norm(x, g, b, mean, variance, training=False),
        [randn(2, 3, 3, 3), randn(3, seed=1), randn(3, seed=2)],
    )


def test_batch_norm_training_moves_the_moving_statistics_by_momentum():
    x = randn(8, 2, 2, 3)
    mean, variance = randn(3, seed=1), np.abs(randn(3, seed=2)) + 1
    expected_mean = mean * 0.9 + x.reshape(-1, 3).mean(axis=0) * 0.1
    expected_variance = variance * 0.9 + x.reshape(-1, 3).var(axis=0) * 0.1  # biased, as Keras 3
    ops.batch_norm(x, None, None, mean, variance, training=True, momentum=0.9)
    np.testing.assert_allclose(mean, expected_mean, rtol=1e-12)
    np.testing.assert_allclose(variance, expected_variance, rtol=1e-12)


# --------------------------------------------------------------------------- dense and elementwise

def test_dense_gradients_match_finite_differences():
    assert gradcheck(ops.dense, [randn(3, 4), randn(4, 2, seed=1), randn(2, seed=2)])


@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh", "softmax", "log_softmax"])
def test_activation_gradients_match_finite_differences(name):
    assert gradcheck(getattr(ops, name), [randn(3, 5)])


def test_softmax_over_another_axis_gradients_match_finite_differences():
    assert gradcheck(lambda x: ops.softmax(x, axis=1), [randn(2, 4, 3)])


def test_softmax_and_log_softmax_are_stable_for_huge_logits():
    logits = np.array([[1000.0, 0.0, -1000.0], [-1e4, -1e4, -1e4]])
    expected = np.array([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]])
    np.testing.assert_allclose(ops.softmax(logits).numpy(), expected, atol=1e-12)
    log_probabilities = ops.log_softmax(logits).numpy()
    assert np.isfinite(log_probabilities).all()
    np.testing.assert_allclose(log_probabilities[0], [0.0, -1000.0, -2000.0])


def test_sigmoid_does_not_overflow():
    np.testing.assert_allclose(ops.sigmoid(np.array([-800.0, 0.0, 800.0])).numpy(), [0.0, 0.5, 1.0])


def test_seeded_dropout_gradients_match_finite_differences():
    assert gradcheck(lambda x: ops.dropout(x, 0.4, seed=7), [randn(4, 6)])


def test_dropout_zeroes_about_rate_and_scales_the_rest():
    x = np.ones((200, 100))
    y = ops.dropout(x, 0.3, seed=1).numpy()
    assert set(np.unique(y)) == {0.0, 1 / 0.7}
    assert abs((y == 0).mean() - 0.3) < 0.01
    np.testing.assert_array_equal(y, ops.dropout(x, 0.3, seed=1).numpy())  # the seed repeats the mask


def test_dropout_noise_shape_shares_the_mask_along_axes_of_size_1():
    y = ops.dropout(np.ones((2, 3, 3, 4)), 0.5, seed=0, noise_shape=(None, 1, 1, 4)).numpy()
    assert (y == y[:, :1, :1, :]).all()


@pytest.mark.parametrize("padding", [((1, 2), (0, 1)), ((0, 0), (2, 2))])
def test_zero_padding2d_gradients_match_finite_differences(padding):
    assert gradcheck(lambda x: ops.zero_padding2d(x, padding), [randn(2, 3, 2, 2)])


def test_add_n_concatenate_flatten_reshape_rescaling_gradients_match_finite_differences():
    assert gradcheck(lambda a, b, c: ops.add_n([a, b, c]), [randn(2, 3), randn(2, 3, seed=1), randn(2, 3, seed=2)])
    assert gradcheck(lambda a, b: ops.concatenate([a, b], axis=-1), [randn(2, 2, 3), randn(2, 2, 1)])
    assert gradcheck(fresh(ops.flatten), [randn(2, 3, 2, 2)])
    assert gradcheck(fresh(lambda x: ops.reshape(x, (3, -1))), [randn(2, 3, 2)])
    assert gradcheck(lambda x: ops.rescaling(x, 1 / 255, offset=-1.0), [randn(2, 3)])
    assert gradcheck(lambda x: ops.rescaling(x, np.array([1.0, 2.0, 3.0])), [randn(2, 3)])


def test_ops_take_numpy_arrays_and_return_tensors():
    y = ops.relu(np.array([-1.0, 2.0]))
    assert isinstance(y, Tensor)
    np.testing.assert_array_equal(y.numpy(), [0.0, 2.0])


def test_ops_accept_views_from_users_and_from_other_ops_backward():
    # zero padding's backward hands the conv below it a strided slice of the gradient, and
    # a transpose hands the conv a strided view of its input; the kernels need contiguous
    # arrays, so the ops must make them so.
    x, k1, k2 = randn(1, 4, 5, 2), randn(3, 3, 2, 2, seed=1), randn(2, 2, 2, 3, seed=2)
    assert gradcheck(lambda x, a, b: ops.conv2d(ops.zero_padding2d(ops.conv2d(x, a), ((1, 0), (0, 2))), b),
                     [x, k1, k2])
    assert gradcheck(lambda x, a: ops.max_pool2d(ops.conv2d(ops.transpose(x, (0, 2, 1, 3)), a), 2), [x, k1])
    flipped = x[..., ::-1]
    np.testing.assert_allclose(ops.conv2d(flipped, k1).numpy(), ops.conv2d(flipped.copy(), k1).numpy())
