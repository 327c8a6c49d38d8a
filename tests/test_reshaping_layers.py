"""Reshape, UpSampling2D and Cropping2D: forward and backward against PyTorch (its
reshape, F.interpolate and slicing, with autograd for the gradients), backward against
finite differences, and the layers' configs and errors.

Keras' UpSampling2D is repeat (nearest) and TensorFlow's/PyTorch's half-pixel bilinear
resize (Keras 3 on the torch backend calls F.interpolate(..., align_corners=False)), so
PyTorch is the oracle for both interpolations.
"""

import numpy as np
import pytest

import convlab
from convlab import layers, ops
from convlab.autograd import Tensor
from convlab.testing import assert_close, gradcheck

torch = pytest.importorskip("torch")
F = torch.nn.functional


def randn(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def nchw(x):
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def nhwc(t):
    return t.detach().numpy().transpose(0, 2, 3, 1)


def layer_and_gradient(layer, x, upstream):
    """The layer's output on x (float64) and d(sum(output * upstream))/dx by convlab's autograd."""
    inputs = Tensor(x, requires_grad=True)
    output = layer(inputs)
    output.backward(Tensor(upstream))
    return output.numpy(), inputs.grad.numpy()


def torch_and_gradient(fn, x, upstream_nhwc):
    """fn on x as NCHW torch, and the gradient of sum(fn(x) * upstream), both back in NHWC."""
    inputs = nchw(x).requires_grad_(True)
    output = fn(inputs)
    output.backward(nchw(upstream_nhwc))
    return nhwc(output), nhwc(inputs.grad)


# --------------------------------------------------------------------------- UpSampling2D

@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
@pytest.mark.parametrize("size", [2, (3, 2), (1, 3)])
def test_upsampling2d_forward_and_backward_match_torch_interpolate(interpolation, size, single_threaded_torch):
    x = randn(2, 5, 4, 3)
    layer = layers.UpSampling2D(size, interpolation=interpolation, dtype="float64")
    sh, sw = (size, size) if isinstance(size, int) else size
    upstream = randn(2, 5 * sh, 4 * sw, 3, seed=1)
    output, gradient = layer_and_gradient(layer, x, upstream)
    options = {"align_corners": False} if interpolation == "bilinear" else {}
    expected, expected_gradient = torch_and_gradient(
        lambda t: F.interpolate(t, scale_factor=(sh, sw), mode=interpolation, **options), x, upstream)
    assert_close(output, expected, rtol=1e-12, atol=1e-12, name="output")
    assert_close(gradient, expected_gradient, rtol=1e-12, atol=1e-12, name="gradient")


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_upsampling2d_gradient_matches_finite_differences(interpolation):
    x = randn(1, 3, 4, 2)
    assert gradcheck(lambda t: ops.upsampling2d(t, (2, 3), interpolation), [x])


def test_upsampling2d_nearest_repeats_each_pixel_as_keras_repeat_does():
    x = np.arange(6, dtype="float32").reshape(1, 2, 3, 1)
    expected = x.repeat(2, axis=1).repeat(3, axis=2)  # keras.ops.repeat along rows, then columns
    np.testing.assert_array_equal(layers.UpSampling2D((2, 3))(x).numpy(), expected)


def test_upsampling2d_refuses_an_unknown_interpolation_naming_it():
    with pytest.raises(ValueError, match=r"interpolation must be one of \('nearest', 'bilinear'\), got 'bicubic'"):
        layers.UpSampling2D(interpolation="bicubic")


# --------------------------------------------------------------------------- Cropping2D

@pytest.mark.parametrize("cropping, window", [
    (1, (slice(1, -1), slice(1, -1))),
    ((2, 1), (slice(2, -2), slice(1, -1))),
    (((1, 0), (0, 2)), (slice(1, None), slice(0, -2))),
])
def test_cropping2d_forward_and_backward_match_torch_slicing(cropping, window, single_threaded_torch):
    x = randn(2, 6, 7, 3)
    layer = layers.Cropping2D(cropping, dtype="float64")
    expected_shape = x[:, window[0], window[1], :].shape
    upstream = randn(*expected_shape, seed=2)
    output, gradient = layer_and_gradient(layer, x, upstream)
    expected, expected_gradient = torch_and_gradient(lambda t: t[:, :, window[0], window[1]], x, upstream)
    assert output.shape == expected_shape
    np.testing.assert_array_equal(output, expected)
    np.testing.assert_array_equal(gradient, expected_gradient)


def test_cropping2d_gradient_matches_finite_differences():
    assert gradcheck(lambda t: ops.multiply(ops.cropping2d(t, ((1, 0), (1, 2))), 1.0), [randn(1, 4, 5, 2)])


def test_cropping2d_that_removes_every_row_is_refused_naming_cropping_and_the_input_shape():
    inputs = convlab.Input((4, 6, 3))
    with pytest.raises(ValueError, match=r"cropping \(\(2, 2\), \(1, 1\)\) removes 4 of the 4 height pixels "
                                         r"of input shape \(None, 4, 6, 3\)"):
        layers.Cropping2D((2, 1))(inputs)
    with pytest.raises(ValueError, match=r"cropping must be an int, .* got -1"):
        layers.Cropping2D(-1)


# --------------------------------------------------------------------------- Reshape

@pytest.mark.parametrize("target_shape", [(4, 15), (-1, 3), (5, 2, 6)])
def test_reshape_forward_and_backward_match_torch_reshape(target_shape, single_threaded_torch):
    x = randn(2, 3, 4, 5)
    layer = layers.Reshape(target_shape, dtype="float64")
    expected = torch.from_numpy(x).reshape((2,) + target_shape)
    upstream = randn(*expected.shape, seed=3)
    output, gradient = layer_and_gradient(layer, x, upstream)
    inputs = torch.from_numpy(x).requires_grad_(True)
    inputs.reshape((2,) + target_shape).backward(torch.from_numpy(upstream))
    np.testing.assert_array_equal(output, expected.numpy())
    np.testing.assert_array_equal(gradient, inputs.grad.numpy())


def test_reshape_resolves_its_minus_one_in_the_symbolic_shape():
    inputs = convlab.Input((6, 4, 2))
    assert layers.Reshape((-1, 8))(inputs).shape == (None, 6, 8)
    assert layers.Reshape((3, -1))(inputs).shape == (None, 3, 16)


def test_reshape_that_changes_the_number_of_values_is_refused_naming_both_shapes():
    inputs = convlab.Input((6, 4, 2))
    with pytest.raises(ValueError, match=r"cannot reshape an input of shape \(None, 6, 4, 2\) \(48 values a sample\) "
                                         r"into target_shape \(5, 10\) \(50 values\)"):
        layers.Reshape((5, 10))(inputs)
    with pytest.raises(ValueError, match=r"target_shape must be a tuple of positive ints with at most one -1, "
                                         r"got \(-1, -1\)"):
        layers.Reshape((-1, -1))


# --------------------------------------------------------------------------- in a model

def test_a_model_with_the_three_layers_saves_and_loads_with_the_same_outputs(tmp_path):
    inputs = convlab.Input((4, 4, 2))
    x = layers.UpSampling2D(2, interpolation="bilinear")(inputs)
    x = layers.Cropping2D(((1, 0), (2, 1)))(x)
    x = layers.Conv2D(3, 3, padding="same")(x)
    outputs = layers.Reshape((-1, 3))(x)
    model = convlab.Model(inputs, outputs)
    data = randn(2, 4, 4, 2).astype("float32")
    before = model.predict(data)
    assert model.output.shape == (None, 7 * 5, 3) and before.shape == (2, 7 * 5, 3)  # 8x8 cropped to 7x5
    model.save(tmp_path / "model.keras")
    restored = convlab.models.load_model(tmp_path / "model.keras")
    np.testing.assert_array_equal(restored.predict(data), before)
    assert [type(layer).__name__ for layer in restored.layers[1:]] == ["UpSampling2D", "Cropping2D", "Conv2D",
                                                                      "Reshape"]
