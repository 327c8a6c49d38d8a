"""Keras' ImageNet architectures (applications.vgg16, Xception, ResNet50, MobileNetV2) and
torchvision's ResNet-50: parameter totals against the published ones, every layer (name,
class, output shape, parameters, padding, strides, epsilon, activation) against Keras'
own models, and the layers they brought (ReLU with max_value, GlobalMaxPooling2D) against
PyTorch. Outputs with Keras' and torch's weights are compared in test_weight_import.py."""

import os
import re

import numpy as np
import pytest

import convlab
from convlab import applications, layers
from convlab.applications.weight_import import keras_layer_order
from convlab.testing import assert_close


def trainable(model):
    return sum(w.size for w in model.trainable_weights)


# ---------------------------------------------------------------- published totals (no Keras needed)


@pytest.mark.parametrize("build, total, trainable_total", [
    (applications.Xception, 22_910_480, 22_855_952),
    (applications.ResNet50, 25_636_712, 25_583_592),
    (applications.MobileNetV2, 3_538_984, 3_504_872),
], ids=["xception", "resnet50", "mobilenet_v2"])
def test_parameter_totals_with_the_top_match_keras_summaries(build, total, trainable_total):
    model = build()
    assert model.output_shape == (None, 1000)
    assert (model.count_params(), trainable(model)) == (total, trainable_total)


def test_default_input_shapes_follow_keras():
    assert applications.Xception().input_shape == (None, 299, 299, 3)
    assert applications.ResNet50(include_top=False).input_shape == (None, None, None, 3)
    assert applications.MobileNetV2(input_shape=(160, 160, 3)).name == "mobilenetv2_1.00_160"
    assert applications.vgg16().input_shape == (None, 180, 180, 3)  # the book's base (not Keras' default)


def test_torchvision_resnet50_has_torchvisions_parameter_count_and_module_names():
    model = applications.torchvision_resnet50()
    assert trainable(model) == 25_557_032  # torchvision.models.resnet50: parameters (BN statistics are buffers)
    names = {layer.name for layer in model.layers}
    assert {"conv1", "bn1", "layer1.0.conv1", "layer1.0.downsample.0", "layer1.0.downsample.1", "layer4.2.bn3",
            "fc"} <= names
    assert model.get_layer("bn1").epsilon == 1e-5 and model.get_layer("layer1.0.conv2").padding == "valid"


@pytest.mark.parametrize("build, file_name", [
    (lambda w: applications.vgg16(weights=w), "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    (lambda w: applications.vgg16(include_top=True, weights=w), "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels.h5"),
    (lambda w: applications.Xception(weights=w), "xception/xception_weights_tf_dim_ordering_tf_kernels.h5"),
    (lambda w: applications.ResNet50(include_top=False, weights=w),
     "resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    (lambda w: applications.MobileNetV2(input_shape=(128, 128, 3), include_top=False, weights=w),
     "mobilenet_v2/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_128_no_top.h5"),
], ids=["vgg16_notop", "vgg16", "xception", "resnet50_notop", "mobilenet_v2_128_notop"])
def test_imagenet_weights_cannot_download_and_the_error_names_keras_file(build, file_name):
    with pytest.raises(NotImplementedError, match="never downloads") as error:
        build("imagenet")
    assert f"https://storage.googleapis.com/tensorflow/keras-applications/{file_name}" in str(error.value)
    assert f"weights='/path/to/{file_name.split('/')[1]}'" in str(error.value)


def test_bad_arguments_are_refused_with_keras_limits(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        applications.ResNet50(weights=str(tmp_path / "missing.h5"))
    with pytest.raises(ValueError, match="at least 71x71"):
        applications.Xception(include_top=False, input_shape=(70, 70, 3))
    with pytest.raises(ValueError, match="pooling must be None, 'avg' or 'max'"):
        applications.MobileNetV2(include_top=False, pooling="mean")
    with pytest.raises(ValueError, match="fully known"):
        applications.ResNet50(input_shape=(None, None, 3))
    with pytest.raises(NotImplementedError, match="never downloads"):
        applications.torchvision_resnet50(weights="imagenet")


# ---------------------------------------------------------------- every layer against Keras' own model


@pytest.fixture(scope="module")
def keras():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    return pytest.importorskip("keras", reason="Keras 3 is the oracle for the architectures (pip install keras)")


def _snake(name):
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _name(layer, class_name):
    """Automatic names (conv2d_7) depend on what the session built before: compare the class."""
    return "<auto>" if re.fullmatch(re.escape(_snake(class_name)) + r"(_\d+)?", layer.name) else layer.name


def describe(layer):
    """What a layer is and computes, from its config: the same reading for Keras and convlab."""
    config = layer.get_config()
    row = [type(layer).__name__, _name(layer, type(layer).__name__), tuple(layer.output.shape[1:]),
           layer.count_params()]
    for key in ("strides", "padding", "dilation_rate", "use_bias", "epsilon", "pool_size", "depth_multiplier",
                "max_value", "negative_slope", "activation"):
        if key in config:
            value = config[key]
            if key == "padding" and not isinstance(value, str):  # ZeroPadding2D's ((top, bottom), (left, right))
                value = tuple(map(tuple, value))
            row.append((key, tuple(value) if isinstance(value, list) else value))
    return row


STRUCTURES = {
    "vgg16_top_32": (lambda k: k.applications.VGG16(weights=None, input_shape=(32, 32, 3), classes=10),
                     lambda: applications.vgg16(include_top=True, input_shape=(32, 32, 3), classes=10)),
    "vgg16_base_max": (lambda k: k.applications.VGG16(weights=None, include_top=False, input_shape=(48, 48, 3),
                                                      pooling="max"),
                       lambda: applications.vgg16(input_shape=(48, 48, 3), pooling="max")),
    "xception_top_71": (lambda k: k.applications.Xception(weights=None, input_shape=(71, 71, 3), classes=7,
                                                          classifier_activation=None),
                        lambda: applications.Xception(input_shape=(71, 71, 3), classes=7, classifier_activation=None)),
    "resnet50_top_32": (lambda k: k.applications.ResNet50(weights=None, input_shape=(32, 32, 3), classes=10),
                        lambda: applications.ResNet50(input_shape=(32, 32, 3), classes=10)),
    "resnet50_base_max": (lambda k: k.applications.ResNet50(weights=None, include_top=False, pooling="max"),
                          lambda: applications.ResNet50(include_top=False, pooling="max")),
    "mobilenet_v2_035_odd_avg": (
        lambda k: k.applications.MobileNetV2(input_shape=(33, 35, 3), alpha=0.35, include_top=False, weights=None,
                                             pooling="avg"),
        lambda: applications.MobileNetV2(input_shape=(33, 35, 3), alpha=0.35, include_top=False, pooling="avg")),
    "mobilenet_v2_130_top_32": (
        lambda k: k.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=1.3, weights=None, classes=5),
        lambda: applications.MobileNetV2(input_shape=(32, 32, 3), alpha=1.3, classes=5)),
}


@pytest.mark.parametrize("case", list(STRUCTURES))
def test_every_layer_matches_keras_in_keras_order(keras, case):
    keras_build, convlab_build = STRUCTURES[case]
    keras_model, model = keras_build(keras), convlab_build()
    expected = [describe(layer) for layer in keras_model.layers]
    found = [describe(layer) for layer in keras_layer_order(model)]
    assert len(found) == len(expected)
    for index, (mine, theirs) in enumerate(zip(found, expected)):
        assert mine == theirs, f"layer {index}"
    assert model.name == keras_model.name
    assert (model.count_params(), trainable(model)) == (
        keras_model.count_params(), sum(int(np.prod(w.shape)) for w in keras_model.trainable_weights))


# ---------------------------------------------------------------- the layers they needed, against PyTorch


def forward_and_gradient(layer, x, upstream):
    tensor = convlab.Tensor(x, requires_grad=True)
    y = layer(tensor)
    y.backward(upstream)
    return y.numpy(), tensor.grad.numpy()


@pytest.mark.parametrize("arguments, torch_function", [
    ({"max_value": 6.0}, lambda F, t: F.relu6(t)),
    ({}, lambda F, t: F.relu(t)),
    ({"max_value": 2.5, "negative_slope": 0.1}, lambda F, t: (F.leaky_relu(t, 0.1)).clamp(max=2.5)),
    ({"negative_slope": 0.3}, lambda F, t: F.leaky_relu(t, 0.3)),
], ids=["relu6", "relu", "capped_leaky", "leaky"])
def test_relu_layer_matches_torch_forward_and_backward(arguments, torch_function, rng):
    torch = pytest.importorskip("torch", reason="PyTorch is the oracle for ReLU's variants")
    x = rng.uniform(-9, 9, (2, 5, 4, 3))
    x[np.abs(x) < 1e-3] = 0.5  # keep away from the kinks, where one-sided derivatives differ by convention
    x[np.abs(x - 6) < 1e-3] = 5.5
    x[np.abs(x - 2.5) < 1e-3] = 2.0
    upstream = rng.normal(size=x.shape)
    y, grad = forward_and_gradient(layers.ReLU(**arguments, dtype="float64"), x, upstream)
    t = torch.tensor(x, requires_grad=True)
    expected = torch_function(torch.nn.functional, t)
    expected.backward(torch.tensor(upstream))
    assert_close(y, expected.detach().numpy(), rtol=1e-12)
    assert_close(grad, t.grad.numpy(), rtol=1e-12)


def test_relu_layer_refuses_a_threshold_and_keeps_its_config():
    with pytest.raises(ValueError, match="threshold"):
        layers.ReLU(threshold=1.0)
    layer = layers.ReLU(6.0, name="out_relu")
    assert layers.ReLU.from_config(layer.get_config()).max_value == 6.0


def test_global_max_pooling_matches_torch_amax(rng):
    torch = pytest.importorskip("torch", reason="PyTorch is the oracle for global max pooling")
    x = rng.normal(size=(2, 4, 5, 3))
    upstream = rng.normal(size=(2, 3))
    y, grad = forward_and_gradient(layers.GlobalMaxPooling2D(dtype="float64"), x, upstream)
    t = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    expected = t.amax(dim=(2, 3))
    expected.backward(torch.tensor(upstream))
    assert_close(y, expected.detach().numpy(), rtol=1e-12)
    assert_close(grad, t.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-12)
    kept = layers.GlobalMaxPooling2D(keepdims=True, dtype="float64")(x).numpy()
    assert_close(kept, expected.detach().numpy()[:, None, None, :], rtol=1e-12)
