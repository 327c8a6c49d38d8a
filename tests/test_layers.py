"""Layers: gradients (finite differences, float64), Keras defaults, initializers, configs,
training/inference behaviour, and the errors wrong use gets."""

import math

import numpy as np
import pytest

import convlab
from convlab import layers, ops, utils
from convlab.autograd import Tensor
from gradcheck_helpers import layer_gradcheck


def randn(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


F64 = {"dtype": "float64"}


# --------------------------------------------------------------------------- gradients through every layer

@pytest.mark.parametrize("make, shape", [
    (lambda: layers.Conv2D(3, 3, activation="relu", **F64), (2, 5, 5, 2)),
    (lambda: layers.Conv2D(2, (3, 2), strides=2, padding="same", **F64), (1, 5, 6, 2)),
    (lambda: layers.Conv2D(2, 3, dilation_rate=2, padding="same", use_bias=False, **F64), (1, 5, 5, 2)),
    (lambda: layers.Conv2DTranspose(2, 3, strides=2, padding="same", activation="tanh", **F64), (1, 3, 3, 2)),
    (lambda: layers.Conv2DTranspose(2, 3, strides=2, output_padding=1, **F64), (1, 2, 3, 2)),
    (lambda: layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", **F64), (2, 4, 4, 2)),
    (lambda: layers.SeparableConv2D(3, 3, strides=2, padding="same", depth_multiplier=2, **F64), (2, 5, 5, 2)),
    (lambda: layers.MaxPooling2D(2, **F64), (2, 4, 4, 2)),
    (lambda: layers.MaxPooling2D(3, strides=2, padding="same", **F64), (1, 5, 5, 2)),
    (lambda: layers.AveragePooling2D(2, strides=1, padding="same", **F64), (2, 3, 3, 2)),
    (lambda: layers.GlobalAveragePooling2D(**F64), (2, 3, 3, 4)),
    (lambda: layers.GlobalAveragePooling2D(keepdims=True, **F64), (2, 3, 3, 4)),
    (lambda: layers.Dense(3, activation="softmax", **F64), (4, 5)),
    (lambda: layers.Flatten(**F64), (2, 3, 2, 2)),
    (lambda: layers.Activation("sigmoid", **F64), (3, 4)),
    (lambda: layers.Rescaling(0.5, offset=-1.0, **F64), (2, 3)),
    (lambda: layers.ZeroPadding2D(((1, 0), (2, 1)), **F64), (1, 2, 2, 2)),
    (lambda: layers.Lambda(lambda x: ops.tanh(x) * x, **F64), (2, 3)),
])
def test_layer_gradients_match_finite_differences(make, shape):
    assert layer_gradcheck(make(), randn(*shape))


@pytest.mark.parametrize("training", [True, False])
def test_batch_normalization_gradients_match_finite_differences(training):
    layer = layers.BatchNormalization(**F64)
    layer.build((None, 3))
    layer.moving_mean.assign(randn(3, seed=1))
    layer.moving_variance.assign(np.abs(randn(3, seed=2)) + 0.5)
    assert layer_gradcheck(layer, randn(4, 2, 2, 3), training=training)


def test_seeded_dropout_layer_gradients_match_finite_differences():
    # A fresh layer with the same seed per call draws the same mask each time.
    def fn(x):
        return layers.Dropout(0.5, seed=3, **F64)(x, training=True)
    assert convlab.testing.gradcheck(fn, [randn(4, 5)])


def test_add_and_concatenate_gradients_match_finite_differences():
    a, b = randn(2, 3, 3, 2), randn(2, 3, 3, 2, seed=1)
    assert layer_gradcheck(layers.Add(**F64), [a, b])
    assert layer_gradcheck(layers.Concatenate(**F64), [a, randn(2, 3, 3, 1, seed=2)])


# --------------------------------------------------------------------------- names, weights, defaults

def test_layers_are_auto_named_per_class_and_clear_session_restarts_the_count():
    utils.clear_session()
    names = [layers.Conv2D(1, 1).name, layers.Conv2D(1, 1).name, layers.Dense(1).name,
             layers.Conv2DTranspose(1, 1).name, layers.BatchNormalization().name,
             layers.GlobalAveragePooling2D().name]
    assert names == ["conv2d", "conv2d_1", "dense", "conv2d_transpose", "batch_normalization",
                     "global_average_pooling2d"]
    utils.clear_session()
    assert layers.Conv2D(1, 1).name == "conv2d"


def test_weights_are_named_after_their_layer_and_listed_in_keras_order():
    conv = layers.Conv2D(4, 3, name="c")
    conv.build((None, 8, 8, 2))
    assert [w.name for w in conv.weights] == ["c/kernel", "c/bias"]
    assert [w.shape for w in conv.weights] == [(3, 3, 2, 4), (4,)]
    separable = layers.SeparableConv2D(5, 3, depth_multiplier=2, name="s")
    separable.build((None, 8, 8, 3))
    assert [(w.name, w.shape) for w in separable.weights] == [
        ("s/depthwise_kernel", (3, 3, 3, 2)), ("s/pointwise_kernel", (1, 1, 6, 5)), ("s/bias", (5,))]
    transpose = layers.Conv2DTranspose(6, 3, name="t")
    transpose.build((None, 4, 4, 2))
    assert transpose.kernel.shape == (3, 3, 6, 2)  # Keras' (kh, kw, filters, in_channels)
    bn = layers.BatchNormalization(name="bn")
    bn.build((None, 4, 4, 7))
    assert [w.name for w in bn.weights] == ["bn/gamma", "bn/beta", "bn/moving_mean", "bn/moving_variance"]
    assert [w.name for w in bn.trainable_weights] == ["bn/gamma", "bn/beta"]
    assert [w.name for w in bn.non_trainable_weights] == ["bn/moving_mean", "bn/moving_variance"]


def test_constructor_defaults_are_keras_defaults():
    conv = layers.Conv2D(8, 3)
    assert (conv.strides, conv.padding, conv.dilation_rate, conv.use_bias) == ((1, 1), "valid", (1, 1), True)
    pool = layers.MaxPooling2D()
    assert pool.pool_size == (2, 2) and pool.strides == (2, 2) and pool.padding == "valid"
    bn = layers.BatchNormalization()
    assert (bn.axis, bn.momentum, bn.epsilon, bn.center, bn.scale) == (-1, 0.99, 1e-3, True, True)
    assert layers.Dense(3).dtype == "float32"


def test_glorot_uniform_uses_keras_fans_for_conv_kernels_and_biases_start_at_zero():
    utils.set_seed(1)
    conv = layers.Conv2D(64, 3)
    conv.build((None, 8, 8, 32))
    limit = math.sqrt(6 / (3 * 3 * 32 + 3 * 3 * 64))  # fan_in = kh*kw*in, fan_out = kh*kw*out
    kernel = conv.kernel.numpy()
    assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.99 * limit
    assert abs(kernel.std() - limit / math.sqrt(3)) < 0.02 * limit  # the std of U(-limit, limit)
    np.testing.assert_array_equal(conv.bias.numpy(), np.zeros(64))


def test_batch_normalization_starts_as_the_identity_statistics():
    bn = layers.BatchNormalization()
    bn.build((None, 5))
    for weight, value in zip(bn.weights, (1, 0, 0, 1)):
        np.testing.assert_array_equal(weight.numpy(), np.full(5, value, dtype=np.float32))


def test_set_seed_repeats_initial_weights_and_another_seed_changes_them():
    def kernel(seed):
        utils.set_seed(seed)
        layer = layers.Dense(4)
        layer.build((None, 3))
        return layer.kernel.numpy()

    np.testing.assert_array_equal(kernel(5), kernel(5))
    assert not np.array_equal(kernel(5), kernel(6))


def test_get_set_weights_round_trip_and_count_params():
    a, b = layers.Dense(3), layers.Dense(3)
    a.build((None, 4))
    b.build((None, 4))
    b.set_weights(a.get_weights())
    x = randn(2, 4)
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())
    assert a.count_params() == 4 * 3 + 3


@pytest.mark.parametrize("make, shape", [
    (lambda: layers.Conv2D(4, (3, 2), strides=2, padding="same", activation="relu", use_bias=False), (2, 6, 6, 3)),
    (lambda: layers.Conv2DTranspose(4, 3, strides=2, output_padding=1, activation="sigmoid"), (2, 3, 3, 2)),
    (lambda: layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same"), (2, 5, 5, 3)),
    (lambda: layers.SeparableConv2D(4, 3, depth_multiplier=2, dilation_rate=2), (2, 7, 7, 3)),
    (lambda: layers.MaxPooling2D(3, strides=2, padding="same"), (2, 5, 5, 3)),
    (lambda: layers.AveragePooling2D((2, 3)), (2, 6, 6, 3)),
    (lambda: layers.GlobalAveragePooling2D(keepdims=True), (2, 5, 5, 3)),
    (lambda: layers.BatchNormalization(momentum=0.9, epsilon=1e-5, center=False), (2, 5, 5, 3)),
    (lambda: layers.Dense(5, activation="tanh"), (2, 3)),
    (lambda: layers.Flatten(), (2, 3, 4)),
    (lambda: layers.Dropout(0.3, seed=2), (2, 3)),
    (lambda: layers.Activation("softmax"), (2, 3)),
    (lambda: layers.Rescaling(1 / 255, offset=0.5), (2, 3)),
    (lambda: layers.ZeroPadding2D(((1, 2), (3, 4))), (2, 3, 3, 1)),
])
def test_from_config_rebuilds_a_layer_that_computes_the_same_function(make, shape):
    layer = make()
    x = randn(*shape).astype(np.float32)
    expected = layer(x).numpy()
    config = layer.get_config()
    clone = type(layer).from_config(dict(config, name=config["name"] + "_clone"))
    clone(x)
    clone.set_weights(layer.get_weights())
    assert {k: v for k, v in clone.get_config().items() if k != "name"} == \
        {k: v for k, v in config.items() if k != "name"}
    np.testing.assert_array_equal(clone(x).numpy(), expected)


# --------------------------------------------------------------------------- behaviour

def test_batch_normalization_in_training_normalizes_with_batch_statistics_and_updates_moving_ones():
    bn = layers.BatchNormalization(momentum=0.9, **F64)
    x = 3.0 + 2.0 * randn(64, 4, 4, 2)
    y = bn(x, training=True).numpy()
    rows = y.reshape(-1, 2)
    np.testing.assert_allclose(rows.mean(axis=0), 0, atol=1e-10)
    np.testing.assert_allclose(rows.std(axis=0), np.sqrt(x.reshape(-1, 2).var(axis=0) / (x.reshape(-1, 2).var(axis=0) + 1e-3)))
    np.testing.assert_allclose(bn.moving_mean.numpy(), 0.1 * x.reshape(-1, 2).mean(axis=0))
    np.testing.assert_allclose(bn.moving_variance.numpy(), 0.9 + 0.1 * x.reshape(-1, 2).var(axis=0))


def test_batch_normalization_in_inference_uses_the_moving_statistics_and_leaves_them():
    bn = layers.BatchNormalization(**F64)
    bn.build((None, 2))
    bn.set_weights([np.array([2.0, 1.0]), np.array([0.5, 0.0]), np.array([1.0, -1.0]), np.array([4.0, 9.0])])
    x = randn(3, 2)
    expected = np.array([2.0, 1.0]) * (x - [1.0, -1.0]) / np.sqrt(np.array([4.0, 9.0]) + 1e-3) + [0.5, 0.0]
    np.testing.assert_allclose(bn(x).numpy(), expected)
    np.testing.assert_array_equal(bn.moving_mean.numpy(), [1.0, -1.0])


def test_frozen_batch_normalization_runs_in_inference_mode_and_is_not_updated_even_in_training():
    bn = layers.BatchNormalization(**F64)
    x = 5.0 + randn(8, 3)
    bn(x)
    bn.trainable = False
    before = [w.copy() for w in bn.get_weights()]
    np.testing.assert_allclose(bn(x, training=True).numpy(), bn(x, training=False).numpy())
    for old, new in zip(before, bn.get_weights()):
        np.testing.assert_array_equal(old, new)
    assert bn.trainable_weights == [] and len(bn.non_trainable_weights) == 4
    assert not bn.gamma.requires_grad


def test_dropout_layer_is_the_identity_in_inference_and_drops_in_training():
    x = np.ones((50, 40), dtype=np.float32)
    layer = layers.Dropout(0.5, seed=0)
    np.testing.assert_array_equal(layer(x).numpy(), x)
    y = layer(x, training=True).numpy()
    assert set(np.unique(y)) == {0.0, 2.0}
    assert not np.array_equal(y, layer(x, training=True).numpy())  # fresh masks on each call


@pytest.mark.parametrize("name", ["relu", "sigmoid", "softmax", "tanh"])
def test_activations_by_name_are_the_ops_of_that_name(name):
    x = randn(3, 4)
    np.testing.assert_allclose(layers.Activation(name, **F64)(x).numpy(), getattr(ops, name)(x).numpy())


def test_linear_none_and_callable_activations():
    x = randn(3, 4)
    np.testing.assert_array_equal(layers.Activation("linear", **F64)(x).numpy(), x)
    np.testing.assert_array_equal(layers.Activation(None, **F64)(x).numpy(), x)
    np.testing.assert_allclose(layers.Activation(lambda t: t * 2.0, **F64)(x).numpy(), 2 * x)


def test_an_unknown_activation_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="'relu7'.*relu, relu6, sigmoid"):
        layers.Dense(2, activation="relu7")


def test_rescaling_turns_uint8_images_into_float32():
    images = np.array([[[[0, 255]]]], dtype=np.uint8)
    y = layers.Rescaling(1.0 / 255)(images)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y.numpy(), [[[[0.0, 1.0]]]])


def test_zero_padding2d_accepts_keras_padding_forms():
    x = np.ones((1, 2, 2, 1), dtype=np.float32)
    assert layers.ZeroPadding2D(1)(x).shape == (1, 4, 4, 1)
    assert layers.ZeroPadding2D((1, 2))(x).shape == (1, 4, 6, 1)
    assert layers.ZeroPadding2D(((0, 1), (2, 3)))(x).shape == (1, 3, 7, 1)
    assert layers.ZeroPadding2D(((0, 1), (2, 3)))(x).numpy().sum() == 4


def test_float64_layers_have_float64_weights_and_float32_layers_cast_their_inputs():
    layer = layers.Dense(2, **F64)
    assert layer(randn(1, 3)).dtype == np.float64
    assert layer.kernel.dtype == np.float64
    assert layers.Dense(2)(randn(1, 3)).dtype == np.float32


def test_a_frozen_layer_has_no_trainable_weights_and_its_weights_record_no_gradient():
    layer = layers.Conv2D(2, 3, trainable=False)
    layer.build((None, 5, 5, 1))
    assert layer.trainable_weights == [] and len(layer.non_trainable_weights) == 2
    assert not layer(np.ones((1, 5, 5, 1))).tracked
    layer.trainable = True
    assert layer(np.ones((1, 5, 5, 1))).tracked


def test_output_shapes_follow_keras_for_every_conv_like_layer():
    x = layers.Input((9, 9, 3))
    assert layers.Conv2D(4, 3, strides=2, padding="same")(x).shape == (None, 5, 5, 4)
    assert layers.Conv2D(4, 3, strides=2)(x).shape == (None, 4, 4, 4)
    assert layers.Conv2DTranspose(4, 3, strides=2, padding="same")(x).shape == (None, 18, 18, 4)
    assert layers.Conv2DTranspose(4, 3, strides=2)(x).shape == (None, 19, 19, 4)
    assert layers.Conv2DTranspose(4, 3, strides=2, output_padding=1)(x).shape == (None, 20, 20, 4)
    assert layers.DepthwiseConv2D(3, depth_multiplier=2)(x).shape == (None, 7, 7, 6)
    assert layers.SeparableConv2D(8, 3, padding="same")(x).shape == (None, 9, 9, 8)
    assert layers.MaxPooling2D(3, strides=2, padding="same")(x).shape == (None, 5, 5, 3)
    assert layers.AveragePooling2D(2)(x).shape == (None, 4, 4, 3)
    assert layers.Conv2D(4, 3)(layers.Input((None, None, 3))).shape == (None, None, None, 4)


def test_symbolic_output_shapes_agree_with_eager_outputs():
    for layer, shape in [(layers.Conv2DTranspose(3, 4, strides=3, padding="same"), (7, 5, 2)),
                         (layers.SeparableConv2D(3, 3, strides=2), (7, 6, 2)),
                         (layers.MaxPooling2D(3, strides=2, padding="same"), (7, 6, 2))]:
        symbolic = layer(layers.Input(shape)).shape
        assert layer(np.zeros((2,) + shape, dtype=np.float32)).shape == (2,) + symbolic[1:]


# --------------------------------------------------------------------------- wrong use, clear errors

def test_conv2d_on_a_rank_3_input_names_the_layer_and_the_shape():
    with pytest.raises(ValueError, match=r"Conv2D layer 'c'.*4-D input.*\(28, 28, 1\)"):
        layers.Conv2D(8, 3, name="c")(np.zeros((28, 28, 1)))


def test_dense_on_an_unflattened_tensor_says_to_flatten_first():
    with pytest.raises(ValueError, match=r"Dense layer 'd'.*2-D.*\(None, 3, 3, 128\).*Flatten"):
        layers.Dense(10, name="d")(layers.Input((3, 3, 128)))


def test_a_layer_built_for_some_channels_refuses_other_channels():
    conv = layers.Conv2D(4, 3, name="c3")
    conv(np.zeros((1, 5, 5, 3)))
    with pytest.raises(ValueError, match=r"'c3' was built for inputs with last axis 3.*\(1, 5, 5, 1\)"):
        conv(np.zeros((1, 5, 5, 1)))


def test_add_layer_with_incompatible_shapes_names_the_shapes():
    with pytest.raises(ValueError, match=r"Add layer 'a'.*\(None, 4, 4, 8\), \(None, 4, 4, 16\)"):
        layers.Add(name="a")([layers.Input((4, 4, 8)), layers.Input((4, 4, 16))])
    with pytest.raises(ValueError, match=r"Add layer 'b'.*\(2, 3\), \(2, 4\)"):
        layers.Add(name="b")([np.zeros((2, 3)), np.zeros((2, 4))])


def test_concatenate_with_mismatched_shapes_names_the_shapes():
    with pytest.raises(ValueError, match=r"Concatenate layer 'cat'.*\(None, 4, 4, 8\), \(None, 5, 5, 8\)"):
        layers.concatenate([layers.Input((4, 4, 8)), layers.Input((5, 5, 8))], name="cat")


def test_set_weights_with_wrong_shapes_or_count_names_the_weight_and_shapes():
    conv = layers.Conv2D(4, 3, name="cw")
    conv.build((None, 5, 5, 2))
    with pytest.raises(ValueError, match=r"'cw/kernel' has shape \(3, 3, 2, 4\), got an array of shape \(3, 3, 1, 4\)"):
        conv.set_weights([np.zeros((3, 3, 1, 4)), np.zeros(4)])
    with pytest.raises(ValueError, match=r"'cw'.*got 1 arrays, expected 2"):
        conv.set_weights([np.zeros((3, 3, 2, 4))])


def test_a_kernel_larger_than_its_input_names_the_layer():
    with pytest.raises(ValueError, match=r"'big'.*\(None, 2, 2, 1\)"):
        layers.Conv2D(1, 3, name="big")(layers.Input((2, 2, 1)))


def test_bad_hyperparameters_name_the_argument():
    with pytest.raises(ValueError, match="padding must be 'valid' or 'same'"):
        layers.Conv2D(4, 3, padding="full")
    with pytest.raises(ValueError, match="kernel_size"):
        layers.Conv2D(4, 0)
    with pytest.raises(ValueError, match="rate"):
        layers.Dropout(1.5)
    with pytest.raises(TypeError, match="unexpected keyword.*'kernal_size'"):
        layers.Conv2D(4, 3, kernal_size=3)


INT32_MAX = 2**31 - 1


@pytest.mark.parametrize("make, argument, value", [
    (lambda v: layers.Conv2D(2, 3, strides=v), "strides", 2**70),
    (lambda v: layers.Conv2D(2, 3, strides=v), "strides", 2.5),
    (lambda v: layers.Conv2D(2, 3, strides=v), "strides", (2.0, 2.0)),
    (lambda v: layers.Conv2D(2, 3, strides=v), "strides", True),
    (lambda v: layers.Conv2D(2, v), "kernel_size", INT32_MAX + 1),
    (lambda v: layers.Conv2D(2, v), "kernel_size", "3"),
    (lambda v: layers.Conv2D(2, 3, dilation_rate=v), "dilation_rate", (1, 2**40)),
    (lambda v: layers.Conv2D(v, 3), "filters", INT32_MAX + 1),
    (lambda v: layers.Conv2D(v, 3), "filters", 8.0),
    (lambda v: layers.SeparableConv2D(4, 3, depth_multiplier=v), "depth_multiplier", 2**70),
    (lambda v: layers.DepthwiseConv2D(3, depth_multiplier=v), "depth_multiplier", 0),
    (lambda v: layers.Conv2DTranspose(2, 3, strides=2, output_padding=v), "output_padding", 2**70),
    (lambda v: layers.Conv2DTranspose(2, 3, strides=2, output_padding=v), "output_padding", "a"),
    (lambda v: layers.MaxPooling2D(v), "pool_size", 2**70),
    (lambda v: layers.AveragePooling2D(2, strides=v), "strides", -1),
    (lambda v: layers.Dense(v), "units", 2**40),
    (lambda v: layers.ZeroPadding2D(v), "padding", ((1, 2**40), (0, 0))),
    (lambda v: layers.Dropout(v), "rate", "0.5"),
])
def test_hyperparameters_outside_the_kernels_int32_range_are_refused_in_the_constructor(make, argument, value):
    # before the native geometry binding, which would raise a TypeError listing its signature
    with pytest.raises(ValueError) as caught:
        make(value)
    message = str(caught.value)
    assert f"{argument} must be" in message and repr(value) in message
    assert "\n" not in message and "incompatible function arguments" not in message


def test_the_largest_int32_stride_is_taken_and_gives_keras_output_size():
    x = layers.Input((8, 8, 1))
    # valid: floor((8 - 3) / s) + 1 = 1 for any stride > 5; same: ceil(8 / s) = 1
    assert layers.Conv2D(2, 3, strides=INT32_MAX)(x).shape == (None, 1, 1, 2)
    assert layers.MaxPooling2D(2, strides=INT32_MAX, padding="same")(x).shape == (None, 1, 1, 1)
    assert layers.Conv2D(2, 3, strides=np.int64(2)).strides == (2, 2)  # numpy ints are ints


def test_a_window_larger_than_the_input_is_refused_before_the_kernel_is_allocated():
    # a 2**20 x 2**20 kernel would be 4 TiB of float32: the geometry check comes first
    with pytest.raises(ValueError, match=r"'huge'.*smaller than the height of the dilated window \(1048576\)"):
        layers.Conv2D(1, 2**20, name="huge")(layers.Input((8, 8, 1)))


def test_batch_norm_refuses_a_negative_moving_variance_naming_the_channel():
    bn = layers.BatchNormalization(name="bn")
    bn.build((None, 4, 4, 3))
    before = bn.get_weights()
    gamma, beta, mean, variance = (np.full(3, value, np.float32) for value in (2.0, 0.5, 0.1, 1.0))
    for bad, channel in ((np.array([1.0, -0.5, 2.0], np.float32), 1), (np.array([1.0, 2.0, np.nan], np.float32), 2)):
        with pytest.raises(ValueError, match=rf"'bn'.*moving_variance must be >= 0.*got {bad[channel]} in channel "
                                             rf"{channel}$"):
            bn.set_weights([gamma, beta, mean, bad])
        for kept, original in zip(bn.get_weights(), before):  # nothing was assigned
            np.testing.assert_array_equal(kept, original)
    inputs = layers.Input((4, 4, 3))
    model = convlab.Model(inputs, layers.BatchNormalization(name="inner")(inputs))
    with pytest.raises(ValueError, match=r"'inner'.*got -1.0 in channel 0"):  # through a model's set_weights too
        model.set_weights([gamma, beta, mean, np.array([-1.0, 1.0, 1.0], np.float32)])
    bn.set_weights([gamma, beta, mean, np.array([0.0, 1.0, 2.0], np.float32)])  # zero is a variance
    x = randn(2, 4, 4, 3).astype(np.float32)
    expected = (x - 0.1) / np.sqrt(np.array([0.0, 1.0, 2.0]) + 1e-3) * 2.0 + 0.5
    np.testing.assert_allclose(bn(x).numpy(), expected, rtol=1e-5)


def test_count_params_of_an_unbuilt_layer_says_it_is_not_built():
    with pytest.raises(ValueError, match="not built"):
        layers.Dense(3).count_params()


def test_symbolic_tensors_refuse_arithmetic_with_a_pointer_to_layers():
    x = layers.Input((3,))
    with pytest.raises(TypeError, match="layers.add"):
        x + x


def test_layers_accept_tensors_and_return_tensors():
    y = layers.Dense(2)(Tensor(np.ones((1, 3), dtype=np.float32)))
    assert isinstance(y, Tensor) and y.shape == (1, 2)
