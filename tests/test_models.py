"""Functional models, Sequential, nesting, summary, configs, training flags, and gradients
through small composite models (float64 finite differences)."""

import json

import numpy as np
import pytest

import convlab
from convlab import GradientTape, Model, Sequential, layers, ops, utils
from convlab.applications import residual_block
from gradcheck_helpers import layer_gradcheck


def randn(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.fixture
def float64():
    utils.set_floatx("float64")
    yield
    utils.set_floatx("float32")


# --------------------------------------------------------------------------- functional API

def two_in_two_out():
    image = layers.Input((6, 6, 2), name="image")
    extra = layers.Input((3,), name="extra")
    x = layers.Conv2D(4, 3, activation="relu", name="conv")(image)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    merged = layers.concatenate([x, extra], name="merge")
    logits = layers.Dense(2, name="logits")(merged)
    aux = layers.Dense(1, activation="sigmoid", name="aux")(x)
    return Model([image, extra], [logits, aux], name="two_by_two")


def test_a_multi_input_multi_output_model_computes_what_its_layers_compute():
    model = two_in_two_out()
    image, extra = randn(2, 6, 6, 2).astype(np.float32), randn(2, 3, seed=1).astype(np.float32)
    logits, aux = model([image, extra])
    conv, gap, dense, aux_dense = (model.get_layer(n) for n in ("conv", "gap", "logits", "aux"))
    features = gap(conv(image))
    np.testing.assert_allclose(logits.numpy(), dense(ops.concatenate([features, extra])).numpy(), rtol=1e-6)
    np.testing.assert_allclose(aux.numpy(), aux_dense(features).numpy(), rtol=1e-6)


def test_model_layers_inputs_and_outputs_are_listed_in_graph_order():
    model = two_in_two_out()
    assert [layer.name for layer in model.layers] == ["image", "extra", "conv", "gap", "merge", "logits", "aux"]
    assert [t.shape for t in model.inputs] == [(None, 6, 6, 2), (None, 3)]
    assert [t.shape for t in model.outputs] == [(None, 2), (None, 1)]
    assert model.output_shape == [(None, 2), (None, 1)]


def test_get_layer_by_name_and_index_and_a_clear_error_for_an_unknown_name():
    model = two_in_two_out()
    assert model.get_layer("gap") is model.layers[3] is model.get_layer(index=3)
    with pytest.raises(ValueError, match=r"no layer named 'gapp'.*image, extra, conv"):
        model.get_layer("gapp")


def test_a_feature_extractor_on_the_same_graph_shares_weights_and_returns_intermediate_activations():
    model = convlab.applications.mnist_convnet()
    activation_model = Model(inputs=model.input, outputs=[layer.output for layer in model.layers[1:5]])
    assert activation_model.count_params() == 320 + 18496
    x = np.random.default_rng(0).random((2, 28, 28, 1)).astype(np.float32)
    activations = activation_model(x)
    assert [a.shape for a in activations] == [(2, 26, 26, 32), (2, 13, 13, 32), (2, 11, 11, 64), (2, 5, 5, 64)]
    np.testing.assert_allclose(activations[0].numpy(), model.layers[1](x).numpy())
    # the rest of the original model applied to the last activation gives the model's output
    rest = activations[3]
    for layer in model.layers[5:]:
        rest = layer(rest)
    np.testing.assert_allclose(rest.numpy(), model(x).numpy(), rtol=1e-5, atol=1e-7)


def test_a_model_is_usable_as_a_layer_inside_another_model():
    inner = Sequential([layers.Input((4,)), layers.Dense(3, activation="relu"), layers.Dense(2)], name="inner")
    inputs = layers.Input((4,))
    outputs = layers.Dense(1)(inner(inputs))
    outer = Model(inputs, outputs)
    assert outer.count_params() == inner.count_params() + 3
    assert outer.layers[1] is inner
    x = randn(5, 4).astype(np.float32)
    np.testing.assert_allclose(outer(x).numpy(), outer.layers[2](inner(x)).numpy(), rtol=1e-6)


def test_eager_call_takes_numpy_or_tensors_and_returns_tensors():
    model = Sequential([layers.Input((3,)), layers.Dense(2)])
    a = model(np.ones((1, 3), dtype=np.float32))
    b = model(convlab.Tensor(np.ones((1, 3), dtype=np.float32)))
    assert isinstance(a, convlab.Tensor)
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_uint8_inputs_are_cast_to_the_input_dtype():
    model = Sequential([layers.Input((2, 2, 1)), layers.Rescaling(1 / 255), layers.Flatten()])
    assert model(np.full((1, 2, 2, 1), 255, dtype=np.uint8)).numpy().tolist() == [[1.0] * 4]


# --------------------------------------------------------------------------- Sequential

def test_sequential_from_an_input_from_input_shape_and_built_by_its_first_call_agree():
    def stack():
        return [layers.Conv2D(2, 3), layers.Flatten(), layers.Dense(3)]

    with_input = Sequential([layers.Input((5, 5, 1))] + stack())
    with_input_shape = Sequential([layers.Conv2D(2, 3, input_shape=(5, 5, 1)), layers.Flatten(), layers.Dense(3)])
    lazy = Sequential()
    for layer in stack():
        lazy.add(layer)
    assert not lazy.built
    lazy(np.zeros((1, 5, 5, 1), dtype=np.float32))
    for model in (with_input, with_input_shape, lazy):
        assert model.built and model.count_params() == 20 + 57
        assert [layer.output.shape for layer in model.layers] == [(None, 3, 3, 2), (None, 18), (None, 3)]
        assert not any(isinstance(layer, layers.InputLayer) for layer in model.layers)  # as in Keras


def test_an_unbuilt_sequential_says_how_to_build_it():
    with pytest.raises(ValueError, match="not built.*Input"):
        Sequential([layers.Dense(2)]).summary()


# --------------------------------------------------------------------------- summary

def test_summary_of_a_sequential_model_prints_layers_shapes_and_keras_totals():
    lines = []
    convlab.applications.mnist_convnet().summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert lines[0] == 'Model: "mnist_convnet"'
    assert "Layer (type)" in text and "Output Shape" in text and "Param #" in text
    assert "Connected to" not in text
    assert any("(Conv2D)" in line and "(None, 26, 26, 32)" in line and line.rstrip().endswith("320") for line in lines)
    assert any("(Dense)" in line and "11,530" in line for line in lines)
    assert "Total params: 104,202" in lines
    assert "Trainable params: 104,202" in lines
    assert "Non-trainable params: 0" in lines


def test_summary_of_a_graph_with_branches_shows_what_each_layer_is_connected_to():
    lines = []
    convlab.applications.residual_convnet().summary(print_fn=lines.append)
    assert "Connected to" in lines[2]
    add_line = next(line for line in lines if "(Add)" in line)
    pool_name = next(line for line in lines if "(MaxPooling2D)" in line).split()[0]
    assert f"{pool_name}[0][0]" in add_line
    assert "Total params: 297,697" in lines


def test_summary_counts_non_trainable_batch_norm_statistics_apart():
    lines = []
    model = Sequential([layers.Input((4,)), layers.Dense(3), layers.BatchNormalization()])
    model.summary(print_fn=lines.append)
    assert lines[-4:-1] == ["Total params: 27", "Trainable params: 21", "Non-trainable params: 6"]


# --------------------------------------------------------------------------- weights and configs

def test_model_weights_are_the_unique_weights_of_its_layers_and_round_trip():
    shared = layers.Dense(3, name="shared")
    a, b = layers.Input((3,)), layers.Input((3,))
    model = Model([a, b], layers.add([shared(a), shared(b)]))
    assert [w.name for w in model.weights] == ["shared/kernel", "shared/bias"]
    values = [np.full(w.shape, 0.5, dtype=np.float32) for w in model.weights]
    model.set_weights(values)
    np.testing.assert_array_equal(model.get_weights()[0], values[0])
    with pytest.raises(ValueError, match=r"'shared/bias' has shape \(3,\), got an array of shape \(4,\)"):
        model.set_weights([values[0], np.zeros(4)])


def test_freezing_a_model_freezes_every_layer():
    model = convlab.applications.mnist_convnet()
    model.trainable = False
    assert model.trainable_weights == [] and len(model.non_trainable_weights) == 8
    assert all(not layer.trainable for layer in model.layers[1:])
    model.trainable = True
    assert len(model.trainable_weights) == 8


@pytest.mark.parametrize("make", [two_in_two_out, convlab.applications.mnist_convnet_first_edition_base,
                                  lambda: convlab.applications.residual_convnet(input_shape=(8, 8, 3))])
def test_a_model_rebuilt_from_its_json_config_computes_the_same_function(make):
    model = make()
    config = json.loads(json.dumps(model.get_config()))  # a config is plain data
    utils.clear_session()
    clone = type(model).from_config(config)
    clone.set_weights(model.get_weights())
    assert [layer.name for layer in clone.layers] == [layer.name for layer in model.layers]
    rng = np.random.default_rng(0)
    x = [rng.random((2,) + t.shape[1:]).astype(np.float32) for t in model.inputs]
    x = x if len(x) > 1 else x[0]
    for got, want in zip(convlab.layers.base.flatten(clone(x)), convlab.layers.base.flatten(model(x))):
        np.testing.assert_array_equal(got.numpy(), want.numpy())


# --------------------------------------------------------------------------- training flag

def test_training_flag_reaches_dropout_and_batch_norm_inside_nested_models():
    inner = Sequential([layers.Input((4,)), layers.BatchNormalization(momentum=0.5), layers.Dropout(0.5, seed=0)])
    outer = Sequential([layers.Input((4,)), inner])
    x = np.ones((8, 4), dtype=np.float32) * 3
    np.testing.assert_allclose(outer(x).numpy(), x / np.sqrt(1 + 1e-3), rtol=1e-6)  # inference: identity stats
    np.testing.assert_array_equal(inner.layers[0].moving_mean.numpy(), np.zeros(4))
    outer(x, training=True)
    np.testing.assert_allclose(inner.layers[0].moving_mean.numpy(), np.full(4, 1.5))


# --------------------------------------------------------------------------- wrong use

def test_duplicate_layer_names_are_refused_naming_the_name():
    inputs = layers.Input((4,))
    x = layers.Dense(3, name="same")(inputs)
    with pytest.raises(ValueError, match="'same' names both a Dense and a Dense"):
        Model(inputs, layers.Dense(2, name="same")(x))


def test_a_model_whose_outputs_do_not_depend_on_its_inputs_is_refused():
    a, b = layers.Input((4,), name="a"), layers.Input((4,), name="b")
    out = layers.Dense(2, name="from_b")(b)
    with pytest.raises(ValueError, match=r"cannot be computed from the model's inputs.*'b/output'.*graph disconnected"):
        Model(a, out)
    with pytest.raises(ValueError, match=r"no output depends on input 1 \('b/output'"):
        Model([a, b], layers.Dense(2)(a))


def test_model_inputs_and_outputs_must_be_symbolic():
    with pytest.raises(TypeError, match=r"outputs\[0\] must be a symbolic tensor.*ndarray"):
        Model(layers.Input((3,)), np.zeros(3))


def test_calling_a_model_on_the_wrong_shape_names_the_input_and_shapes():
    model = convlab.applications.mnist_convnet()
    with pytest.raises(ValueError, match=r"expects shape \(None, 28, 28, 1\), got \(2, 28, 28, 3\)"):
        model(np.zeros((2, 28, 28, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="expects 2 input"):
        two_in_two_out()(np.zeros((1, 6, 6, 2)))


# --------------------------------------------------------------------------- gradients through composite models

def test_conv_bn_relu_pool_dense_model_gradients_match_finite_differences(float64):
    model = Sequential([
        layers.Input((6, 6, 2)), layers.Conv2D(3, 3, padding="same"), layers.BatchNormalization(),
        layers.Activation("relu"), layers.MaxPooling2D(2), layers.Flatten(), layers.Dense(2, activation="softmax"),
    ])
    assert layer_gradcheck(model, randn(3, 6, 6, 2), training=True)
    assert layer_gradcheck(model, randn(3, 6, 6, 2, seed=1), training=False)


def test_residual_block_with_a_projection_gradients_match_finite_differences(float64):
    inputs = layers.Input((4, 4, 2))
    model = Model(inputs, residual_block(inputs, 3, pooling=True))
    assert len(model.layers) == 6  # input, two convs, pool, 1x1 strided projection, add
    assert layer_gradcheck(model, randn(2, 4, 4, 2))


def test_separable_block_gradients_match_finite_differences(float64):
    inputs = layers.Input((5, 5, 2))
    x = layers.BatchNormalization()(inputs)
    x = layers.Activation("relu")(x)
    x = layers.SeparableConv2D(3, 3, padding="same", use_bias=False)(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
    residual = layers.Conv2D(3, 1, strides=2, padding="same", use_bias=False)(inputs)
    model = Model(inputs, layers.GlobalAveragePooling2D()(layers.add([x, residual])))
    assert layer_gradcheck(model, randn(2, 5, 5, 2), training=True)


def test_transposed_conv_decoder_gradients_match_finite_differences(float64):
    model = Sequential([
        layers.Input((4, 4, 1)), layers.Conv2D(2, 3, strides=2, padding="same", activation="relu"),
        layers.Conv2DTranspose(2, 3, padding="same", activation="relu"),
        layers.Conv2DTranspose(2, 3, strides=2, padding="same"), layers.Conv2D(3, 3, padding="same", activation="softmax"),
    ])
    assert model.output_shape == (None, 4, 4, 3)
    assert layer_gradcheck(model, randn(1, 4, 4, 1))


def test_tape_gradients_on_trainable_weights_equal_backward_gradients(float64):
    model = Sequential([layers.Input((5,)), layers.Dense(4, activation="tanh"), layers.Dense(1)])
    x = randn(3, 5)
    with GradientTape() as tape:
        loss = model(x, training=True).mean()
    grads = tape.gradient(loss, model.trainable_weights)
    model(x, training=True).mean().backward()
    for weight, grad in zip(model.trainable_weights, grads):
        np.testing.assert_allclose(grad.numpy(), weight.grad.numpy())
        weight.zero_grad()


def test_gradient_ascent_on_an_input_image_through_a_model_raises_the_filter_activation(float64):
    utils.set_seed(0)
    model = convlab.applications.mnist_convnet_first_edition_base()
    extractor = Model(model.input, model.layers[2].output)
    image = convlab.Tensor(np.random.default_rng(0).uniform(0.4, 0.6, (1, 28, 28, 1)))

    def activation(image):
        return extractor(image)[:, 2:-2, 2:-2, :].mean(axis=(0, 1, 2))

    start = activation(image).numpy()
    channel = int(np.argmax(start))  # a filter that is not dead at the start
    for _ in range(5):
        with GradientTape() as tape:
            tape.watch(image)
            loss = activation(image)[channel]
        grad = tape.gradient(loss, image).numpy()
        image = convlab.Tensor(image.numpy() + 0.1 * grad / (np.linalg.norm(grad) + 1e-12))
    assert activation(image).numpy()[channel] > start[channel] + 1e-3


# --------------------------------------------------------------------------- subclassing

class ConvBlock(layers.Layer):
    def __init__(self, filters, **kwargs):
        super().__init__(**kwargs)
        self.conv = layers.Conv2D(filters, 3, padding="same")
        self.norm = layers.BatchNormalization()

    def call(self, inputs, training=False):
        return ops.relu(self.norm(self.conv(inputs), training=training))


def test_a_custom_layer_owns_the_weights_of_the_layers_it_keeps_and_infers_its_output_shape():
    block = ConvBlock(4)
    outputs = block(layers.Input((5, 5, 3)))
    assert outputs.shape == (None, 5, 5, 4)
    assert len(block.weights) == 6 and len(block.trainable_weights) == 4
    assert block.count_params() == 3 * 3 * 3 * 4 + 4 + 4 * 4


def test_a_subclassed_model_tracks_its_layers_and_passes_training_down():
    class Net(Model):
        def __init__(self):
            super().__init__()
            self.block = ConvBlock(4)
            self.pool = layers.GlobalAveragePooling2D()
            self.head = layers.Dense(2)

        def call(self, inputs, training=False):
            return self.head(self.pool(self.block(inputs, training=training)))

    net = Net()
    x = 1.0 + np.random.default_rng(0).random((2, 6, 6, 3)).astype(np.float32)
    assert net(x).shape == (2, 2)
    assert net.count_params() == 112 + 16 + 10
    net(x, training=True)
    assert np.abs(net.block.norm.moving_mean.numpy()).sum() > 0


@pytest.mark.cuda
def test_a_model_moved_to_the_gpu_computes_what_it_computes_on_the_cpu():
    pytest.importorskip("cupy")
    model = convlab.applications.mnist_convnet()
    x = np.random.default_rng(0).random((2, 28, 28, 1)).astype(np.float32)
    expected = model(x).numpy()
    model.to("cuda")
    image = convlab.Tensor(x).to("cuda")
    with GradientTape() as tape:
        tape.watch(image)
        y = model(image)
        score = y[:, 3].sum()
    assert y.device == "cuda"
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-4, atol=1e-6)
    assert tape.gradient(score, image).shape == x.shape
