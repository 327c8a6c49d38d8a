"""The across-channel layers of Géron's chapter 14 and Multiply: LocalResponseNormalization
against PyTorch and a loop over the definition, depth-wise max pooling against numpy,
Multiply's broadcasting against numpy, and every backward against finite differences."""

import numpy as np
import pytest

from convlab import Tensor, layers
from convlab.ops import across_channels
from convlab.testing import gradcheck


def lrn_by_definition(x, depth_radius, bias, alpha, beta):
    """tf.nn.local_response_normalization's documented formula, one channel at a time."""
    y = np.empty_like(x)
    channels = x.shape[-1]
    for d in range(channels):
        window = x[..., max(0, d - depth_radius):min(channels, d + depth_radius + 1)]
        y[..., d] = x[..., d] / (bias + alpha * (window ** 2).sum(axis=-1)) ** beta
    return y


@pytest.mark.parametrize("depth_radius, channels", [(2, 7), (0, 3), (3, 4), (5, 12)])
def test_lrn_matches_the_definition_loop(rng, depth_radius, channels):
    x = rng.standard_normal((2, 3, 4, channels)) * 3
    y = across_channels.local_response_normalization(x, depth_radius, 1.5, 0.1, 0.75).numpy()
    np.testing.assert_allclose(y, lrn_by_definition(x, depth_radius, 1.5, 0.1, 0.75), rtol=1e-12)


@pytest.mark.parametrize("depth_radius, bias, alpha, beta", [(2, 1.0, 0.00002, 0.75), (1, 2.0, 0.3, 0.5),
                                                             (3, 1.0, 1e-4, 0.75)])
def test_lrn_matches_torch_local_response_norm(rng, depth_radius, bias, alpha, beta):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 5, 6, 9)).astype(np.float32) * 40  # large enough that alpha matters
    layer = layers.LocalResponseNormalization(depth_radius=depth_radius, bias=bias, alpha=alpha, beta=beta)
    y = layer(x).numpy()
    # torch: size = 2r + 1 channels, alpha divided by size, k = bias; NCHW
    size = 2 * depth_radius + 1
    expected = torch.nn.functional.local_response_norm(torch.from_numpy(x).permute(0, 3, 1, 2), size=size,
                                                       alpha=alpha * size, beta=beta, k=bias)
    np.testing.assert_allclose(y, expected.permute(0, 2, 3, 1).numpy(), rtol=2e-5, atol=1e-6)


def test_lrn_backward_matches_torch_autograd(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 3, 3, 8)) * 5
    upstream = rng.standard_normal(x.shape)
    tensor = Tensor(x.copy(), requires_grad=True)
    across_channels.local_response_normalization(tensor, 2, 1.0, 0.05, 0.75).backward(upstream)
    reference = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).requires_grad_()
    torch.nn.functional.local_response_norm(reference, size=5, alpha=0.05 * 5, beta=0.75, k=1.0).backward(
        torch.from_numpy(upstream.transpose(0, 3, 1, 2).copy()))
    np.testing.assert_allclose(tensor.grad.numpy(), reference.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-10)


@pytest.mark.parametrize("depth_radius, alpha, beta", [(2, 0.3, 0.75), (1, 1.0, 0.5), (4, 0.05, 1.3)])
def test_lrn_gradcheck(rng, depth_radius, alpha, beta):
    x = rng.standard_normal((2, 2, 3, 6))
    assert gradcheck(lambda x: across_channels.local_response_normalization(x, depth_radius, 1.0, alpha, beta), [x])


def test_lrn_layer_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"depth_radius must be an int >= 0, got -1"):
        layers.LocalResponseNormalization(depth_radius=-1)
    with pytest.raises(ValueError, match=r"bias must be a number > 0, got 0"):
        layers.LocalResponseNormalization(bias=0)


def depth_max_pool_by_numpy(x, pool_size, strides):
    starts = range(0, x.shape[-1] - pool_size + 1, strides)
    return np.stack([x[..., s:s + pool_size].max(axis=-1) for s in starts], axis=-1)


@pytest.mark.parametrize("channels, pool_size, strides", [(12, 3, None), (9, 3, 3), (10, 3, 2), (7, 2, 1), (5, 5, 1)])
def test_depth_max_pooling_matches_numpy(rng, channels, pool_size, strides):
    x = rng.standard_normal((2, 4, 5, channels)).astype(np.float32)
    layer = layers.DepthMaxPooling(pool_size, strides)
    expected = depth_max_pool_by_numpy(x, pool_size, strides or pool_size)
    y = layer(x).numpy()
    np.testing.assert_array_equal(y, expected)
    assert layer.compute_output_shape((None, 4, 5, channels)) == (None,) + expected.shape[1:]


def test_geron_depth_pool_turns_12_maps_into_4():
    """Géron's example: tf.nn.max_pool(ksize=(1, 1, 1, 3), strides=(1, 1, 1, 3)) on 12 maps."""
    x = np.arange(12, dtype=np.float32)[::-1].reshape(1, 1, 1, 12)  # 11, 10, ..., 0
    np.testing.assert_array_equal(layers.DepthMaxPooling(3)(x).numpy().ravel(), [11, 8, 5, 2])


@pytest.mark.parametrize("pool_size, strides", [(3, 3), (3, 2), (2, 1)])
def test_depth_max_pooling_gradcheck(rng, pool_size, strides):
    x = rng.standard_normal((2, 2, 2, 7))  # continuous values: no ties, so the max is differentiable
    assert gradcheck(lambda x: across_channels.depth_max_pool(x, pool_size, strides), [x])


def test_depth_max_pooling_sends_the_gradient_to_the_first_maximum():
    x = Tensor(np.array([[[[1.0, 3.0, 3.0, 0.0, 2.0, 2.0]]]]), requires_grad=True)
    across_channels.depth_max_pool(x, 3).backward(np.array([[[[10.0, 20.0]]]]))
    np.testing.assert_array_equal(x.grad.numpy().ravel(), [0, 10, 0, 0, 20, 0])  # worked by hand


def test_depth_max_pooling_rejects_too_few_channels():
    with pytest.raises(ValueError, match=r"pool_size=3 channels, got shape \(1, 2, 2, 2\)"):
        across_channels.depth_max_pool(np.zeros((1, 2, 2, 2)), 3)


def test_multiply_broadcasts_like_numpy(rng):
    a = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    b = rng.standard_normal((2, 1, 1, 5)).astype(np.float32)
    c = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    np.testing.assert_allclose(layers.multiply([a, b, c]).numpy(), a * b * c, rtol=1e-6)
    inputs = [layers.Input(shape=(3, 4, 5)), layers.Input(shape=(1, 1, 5))]
    assert layers.Multiply()(inputs).shape == (None, 3, 4, 5)


def test_multiply_gradcheck(rng):
    a, b = rng.standard_normal((2, 3, 3, 4)), rng.standard_normal((2, 1, 1, 4))
    assert gradcheck(lambda a, b: layers.Multiply(dtype="float64")([a, b]), [a, b])


def test_multiply_rejects_shapes_that_do_not_broadcast():
    with pytest.raises(ValueError, match=r"broadcast.*\(None, 3, 4, 5\), \(None, 3, 4, 2\)"):
        layers.Multiply()([layers.Input(shape=(3, 4, 5)), layers.Input(shape=(3, 4, 2))])
