"""What porting the books' listings verbatim needed from convlab (examples/):

- Géron's ResidualUnit keeps its sublayers in lists (`self.main_layers = [...]`): a layer's
  list, tuple and dict attributes are searched for layers, as Keras tracks them, so their
  weights are the unit's weights.
- The same unit calls `layer(Z)` without `training=`: a layer called inside another layer's
  call takes the caller's training flag, as Keras' call context does, so batch norm uses
  the batch statistics (and updates its moving ones) while the model trains.
- Géron compiles with optimizer="nadam": convlab.optimizers.Nadam, Keras' update rule.

Each claim is checked against something computed another way: a hand count of parameters,
batch normalization written out in numpy, the library's own ResidualUnit (separate code,
same weights), finite differences, and Keras' Nadam.
"""

import os
from functools import partial

import numpy as np
import pytest

import convlab
from convlab import layers, optimizers
from convlab.autograd import Variable
from convlab.testing import gradcheck


# --------------------------------------------------------------------------- Géron's ResidualUnit, as printed

DefaultConv2D = partial(layers.Conv2D, kernel_size=3, strides=1, padding="same", kernel_initializer="he_normal",
                        use_bias=False)


class BookResidualUnit(layers.Layer):
    """Géron, Hands-On Machine Learning (3rd ed.), ch. 14, with `tf.keras` replaced by `convlab`."""

    def __init__(self, filters, strides=1, activation="relu", **kwargs):
        super().__init__(**kwargs)
        self.activation = convlab.activations.get(activation)
        self.main_layers = [
            DefaultConv2D(filters, strides=strides),
            layers.BatchNormalization(),
            self.activation,
            DefaultConv2D(filters),
            layers.BatchNormalization(),
        ]
        self.skip_layers = []
        if strides > 1:
            self.skip_layers = [
                DefaultConv2D(filters, kernel_size=1, strides=strides),
                layers.BatchNormalization(),
            ]

    def call(self, inputs):
        Z = inputs
        for layer in self.main_layers:
            Z = layer(Z)
        skip_Z = inputs
        for layer in self.skip_layers:
            skip_Z = layer(skip_Z)
        return self.activation(Z + skip_Z)


def unit_parameters(filters, in_channels, strides):
    """Hand count: two 3x3 convs without bias, two batch norms (4 weights per channel), and
    with a stride a 1x1 projection and its batch norm."""
    count = 3 * 3 * in_channels * filters + 4 * filters + 3 * 3 * filters * filters + 4 * filters
    if strides > 1:
        count += in_channels * filters + 4 * filters
    return count


@pytest.mark.parametrize("filters, in_channels, strides", [(8, 8, 1), (16, 8, 2)])
def test_layers_kept_in_a_list_attribute_are_the_units_weights(filters, in_channels, strides):
    unit = BookResidualUnit(filters, strides=strides)
    unit(np.zeros((1, 8, 8, in_channels), dtype="float32"))
    assert unit.count_params() == unit_parameters(filters, in_channels, strides)
    batch_norms = 2 if strides == 1 else 3
    assert len(unit.non_trainable_weights) == 2 * batch_norms  # moving mean and variance of each


def test_layers_in_tuple_and_dict_attributes_are_tracked_and_private_ones_are_not():
    class Block(layers.Layer):
        def __init__(self):
            super().__init__()
            self.pair = (layers.Dense(3), layers.Dense(2))
            self.by_name = {"head": layers.Dense(1)}
            self._scratch = [layers.Dense(5)]  # private: not a sublayer, as in Keras

        def call(self, inputs):
            return self.by_name["head"](self.pair[1](self.pair[0](inputs)))

    block = Block()
    block(np.zeros((2, 4), dtype="float32"))
    assert block.count_params() == (4 * 3 + 3) + (3 * 2 + 2) + (2 * 1 + 1)


def test_book_resnet34_has_the_parameters_of_the_published_resnet34():
    """The chapter's Sequential ResNet-34 built from the book's unit against the hand count and
    the count applications.resnet34 is checked to share with torchvision's resnet34."""
    model = convlab.Sequential([
        DefaultConv2D(64, kernel_size=7, strides=2, input_shape=[64, 64, 3]),
        layers.BatchNormalization(),
        layers.Activation("relu"),
        layers.MaxPool2D(pool_size=3, strides=2, padding="same"),
    ])
    expected = 7 * 7 * 3 * 64 + 4 * 64
    prev_filters = 64
    for filters in [64] * 3 + [128] * 4 + [256] * 6 + [512] * 3:
        strides = 1 if filters == prev_filters else 2
        model.add(BookResidualUnit(filters, strides=strides))
        expected += unit_parameters(filters, prev_filters, strides)
        prev_filters = filters
    model.add(layers.GlobalAvgPool2D())
    model.add(layers.Flatten())
    model.add(layers.Dense(10, activation="softmax"))
    expected += 512 * 10 + 10
    # the README's 21,814,696 for applications.resnet34 with 1,000 classes, less 512 * 990 + 990
    assert model.count_params() == expected == 21_814_696 - 512 * 990 - 990


# --------------------------------------------------------------------------- training flag through nested calls

def batch_norm_numpy(x, gamma, beta, mean, variance, epsilon=1e-3):
    return gamma * (x - mean) / np.sqrt(variance + epsilon) + beta


class Normalizing(layers.Layer):
    """A custom layer whose call runs batch norm without passing training, as the books write it."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.steps = [layers.BatchNormalization(momentum=0.5)]

    def call(self, inputs):
        return self.steps[0](inputs)


def test_a_layer_called_inside_a_custom_call_trains_when_the_model_trains(rng):
    inputs = convlab.Input(shape=(4,))
    model = convlab.Model(inputs, Normalizing()(inputs))
    x = (rng.standard_normal((16, 4)) * 3 + 5).astype("float32")
    batch_norm = model.layers[1].steps[0]

    training_output = model(x, training=True).numpy()
    mean, variance = x.mean(axis=0), x.var(axis=0)
    np.testing.assert_allclose(training_output, batch_norm_numpy(x, 1, 0, mean, variance), rtol=1e-4, atol=1e-5)
    # Keras' moving statistics: moving = momentum * moving + (1 - momentum) * batch (variance unbiased or
    # not, depending on the version; here the mean alone pins the update)
    np.testing.assert_allclose(batch_norm.moving_mean.numpy(), 0.5 * mean, rtol=1e-5)

    moving_mean, moving_variance = batch_norm.moving_mean.numpy(), batch_norm.moving_variance.numpy()
    inference_output = model(x, training=False).numpy()
    np.testing.assert_allclose(inference_output, batch_norm_numpy(x, 1, 0, moving_mean, moving_variance),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(batch_norm.moving_mean.numpy(), moving_mean)  # inference leaves them


def test_an_explicit_training_argument_inside_a_call_wins_over_the_callers():
    class FrozenStatistics(layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.batch_norm = layers.BatchNormalization()

        def call(self, inputs):
            return self.batch_norm(inputs, training=False)

    layer = FrozenStatistics()
    x = np.arange(12, dtype="float32").reshape(3, 4)
    output = layer(x, training=True).numpy()
    np.testing.assert_allclose(output, batch_norm_numpy(x, 1, 0, 0, 1), rtol=1e-6)  # initial moving stats


@pytest.fixture
def float64_layers():
    """The book's unit makes its sublayers without a dtype: they take floatx, as in Keras."""
    previous = convlab.utils.floatx()
    convlab.utils.set_floatx("float64")
    yield
    convlab.utils.set_floatx(previous)


def test_book_residual_unit_matches_the_library_unit_with_the_same_weights_in_training(rng, float64_layers):
    """Forward and input gradient of the book's unit against layers.ResidualUnit (strides 2,
    so both paths are convolutions), with batch statistics, and the gradient against finite
    differences in float64."""
    x = rng.standard_normal((2, 6, 6, 3))
    book = BookResidualUnit(4, strides=2)
    library = layers.ResidualUnit(4, strides=2)
    book(x), library(x)
    by_role = lambda unit: ([l for l in unit.main_layers if isinstance(l, layers.Layer)]
                            + [l for l in unit.skip_layers])
    for ours, theirs in zip(by_role(book), by_role(library)):
        theirs.set_weights(ours.get_weights())

    def run(unit, array):
        tensor = convlab.Tensor(array)
        with convlab.GradientTape() as tape:
            tape.watch(tensor)
            output = unit(tensor, training=True)
            loss = (output * output).sum()
        return output.numpy(), tape.gradient(loss, tensor).numpy()

    book_output, book_gradient = run(book, x)
    library_output, library_gradient = run(library, x)
    np.testing.assert_allclose(book_output, library_output, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(book_gradient, library_gradient, rtol=1e-9, atol=1e-11)
    gradcheck(lambda t: (book(t, training=True) ** 2).sum(), [x], atol=1e-5, rtol=1e-4)


# --------------------------------------------------------------------------- Nadam

@pytest.fixture(scope="module")
def keras():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    return pytest.importorskip("keras")


def nadam_steps(make_optimizer, gradients, start):
    variable = Variable(start.copy(), dtype="float64")
    optimizer = make_optimizer()
    for gradient in gradients:
        optimizer.apply_gradients([(gradient, variable)])
    return variable.numpy()


# Keras keeps the learning rate in a float32 variable: rates that float32 holds exactly
# (2**-10, 2**-4) make the float64 updates comparable to the last bits.
@pytest.mark.parametrize("learning_rate, beta_1, beta_2", [(2.0 ** -10, 0.9, 0.999), (2.0 ** -4, 0.8, 0.95)])
@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")
def test_nadam_matches_keras_nadam_over_twelve_steps(keras, rng, learning_rate, beta_1, beta_2):
    start = rng.standard_normal((3, 4))
    gradients = [rng.standard_normal((3, 4)) for _ in range(12)]
    theirs = keras.Variable(start.copy(), dtype="float64")
    keras_nadam = keras.optimizers.Nadam(learning_rate, beta_1=beta_1, beta_2=beta_2)
    for gradient in gradients:
        keras_nadam.apply_gradients([(keras.ops.convert_to_tensor(gradient, dtype="float64"), theirs)])
    ours = nadam_steps(lambda: optimizers.Nadam(learning_rate, beta_1=beta_1, beta_2=beta_2), gradients, start)
    np.testing.assert_allclose(ours, keras.ops.convert_to_numpy(theirs), rtol=1e-10, atol=1e-12)


def test_nadam_first_step_by_hand():
    # t = 1: mu_1 = 0.9 (1 - 0.5 * 0.96), mu_2 = 0.9 (1 - 0.5 * 0.96^2), P_1 = mu_1;
    # m = 0.1 g, v = 0.001 g^2, v_hat = g^2
    g, lr = 2.0, 0.01
    mu_1, mu_2 = 0.9 * (1 - 0.5 * 0.96), 0.9 * (1 - 0.5 * 0.96 ** 2)
    m_hat = mu_2 * 0.1 * g / (1 - mu_1 * mu_2) + (1 - mu_1) * g / (1 - mu_1)
    expected = 1.0 - lr * m_hat / (abs(g) + 1e-7)
    result = nadam_steps(lambda: optimizers.Nadam(lr), [np.array([g])], np.array([1.0]))
    np.testing.assert_allclose(result, [expected], rtol=1e-12)


def test_nadam_resumed_from_its_state_continues_as_if_never_stopped(rng):
    start = rng.standard_normal(5)
    gradients = [rng.standard_normal(5) for _ in range(8)]
    uninterrupted = nadam_steps(lambda: optimizers.Nadam(0.01), gradients, start)

    variable = Variable(start.copy(), dtype="float64")
    first = optimizers.Nadam(0.01)
    for gradient in gradients[:5]:
        first.apply_gradients([(gradient, variable)])
    resumed = optimizers.Nadam.from_config(first.get_config())
    resumed.set_state([variable], first.get_state([variable]))
    for gradient in gradients[5:]:
        resumed.apply_gradients([(gradient, variable)])
    np.testing.assert_allclose(variable.numpy(), uninterrupted, rtol=1e-12)


def test_nadam_is_known_by_name_and_refuses_a_bad_beta():
    assert isinstance(optimizers.get("nadam"), optimizers.Nadam)
    assert isinstance(optimizers.deserialize(optimizers.serialize(optimizers.Nadam(0.002))), optimizers.Nadam)
    with pytest.raises(ValueError, match=r"Nadam: beta_1 must be in \[0, 1\), got 1\.5"):
        optimizers.Nadam(beta_1=1.5)


# --------------------------------------------------------------------------- keras.utils' image functions

def test_the_books_keras_utils_image_calls_work_on_convlab_utils(tmp_path, rng):
    """Chollet 2e's get_img_array, `keras.utils.load_img` + `img_to_array` with `keras` being
    convlab, against Pillow reading and resizing the same file (nearest, Keras' default)."""
    from PIL import Image

    pixels = rng.integers(0, 256, size=(6, 9, 3), dtype=np.uint8)
    path = str(tmp_path / "picture.png")
    Image.fromarray(pixels).save(path)
    array = convlab.utils.img_to_array(convlab.utils.load_img(path, target_size=(4, 5)))
    expected = np.asarray(Image.open(path).resize((5, 4), Image.NEAREST), dtype=np.float32)
    np.testing.assert_array_equal(array, expected)

    from convlab.utils import array_to_img, image_dataset_from_directory, save_img  # noqa: F401  (importable)
    with pytest.raises(AttributeError, match="module 'convlab.utils' has no attribute 'get_file'"):
        convlab.utils.get_file
