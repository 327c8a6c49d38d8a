"""Foreign weights into convlab models, against the frameworks that wrote them.

Keras: each architecture is built by keras.applications with random weights (batch norm
statistics included), written by Keras itself (save_weights -> .weights.h5, save -> .keras,
save -> legacy full-model .h5) or in Keras 2's legacy layout by h5py (the layout of Keras'
published *_weights_tf_dim_ordering_tf_kernels*.h5 files, with Keras 2's automatic names),
loaded into convlab's model, and the outputs compared with Keras' on one random input.
PyTorch: torchvision-style state dicts from plain torch.nn modules with torchvision's module
names (torchvision itself is not needed). Failed loads must name the layer and both shapes
and leave every weight as it was.
"""

import os
import re
import sys

import numpy as np
import pytest

import convlab
from convlab import applications, layers
from convlab.applications.weight_import import keras_layer_order, load_torch_state_dict
from convlab.testing import assert_close

# ---------------------------------------------------------------- Keras files, written by Keras


@pytest.fixture(scope="module")
def keras():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    pytest.importorskip("h5py", reason="h5py reads Keras' HDF5 files (pip install 'convlab[keras-weights]')")
    return pytest.importorskip("keras", reason="Keras 3 writes the files and is the oracle (pip install keras)")


CASES = {  # Keras' model, convlab's (extra arguments: weights=, classes=), input shape
    "resnet50": (lambda k: k.applications.ResNet50(weights=None, input_shape=(32, 32, 3), classes=10,
                                                   classifier_activation=None),
                 lambda **kw: applications.ResNet50(**{"input_shape": (32, 32, 3), "classes": 10,
                                                       "classifier_activation": None, **kw}), (32, 32, 3)),
    "xception": (lambda k: k.applications.Xception(weights=None, input_shape=(71, 71, 3), classes=10,
                                                   classifier_activation=None),
                 lambda **kw: applications.Xception(input_shape=(71, 71, 3), classes=10, classifier_activation=None,
                                                    **kw), (71, 71, 3)),
    "mobilenet_v2": (lambda k: k.applications.MobileNetV2(input_shape=(40, 40, 3), weights=None, classes=10),
                     lambda **kw: applications.MobileNetV2(input_shape=(40, 40, 3), classes=10, **kw), (40, 40, 3)),
    "vgg16": (lambda k: k.applications.VGG16(weights=None, input_shape=(32, 32, 3), classes=10,
                                             classifier_activation=None),
              lambda **kw: applications.vgg16(**{"include_top": True, "input_shape": (32, 32, 3), "classes": 10,
                                                 "classifier_activation": None, **kw}), (32, 32, 3)),
}


def _snake(name):
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def randomize(keras, keras_model, rng):
    """Random weights of a sensible scale, batch norm statistics included."""
    values = []
    for variable in keras_model.weights:
        shape = tuple(variable.shape)
        if variable.name in ("gamma", "moving_variance"):
            values.append(rng.uniform(0.5, 1.5, shape))
        elif variable.name in ("beta", "moving_mean", "bias"):
            values.append(rng.normal(0, 0.1, shape))
        else:
            fan_in = np.prod(shape[:-1]) if variable.name != "depthwise_kernel" else np.prod(shape[:2])
            values.append(rng.normal(0, 1, shape) / np.sqrt(fan_in))
    keras_model.set_weights([v.astype("float32") for v in values])


def keras2_names(keras_model, renames=None):
    """The names Keras 2 gave the layers of its published files: input_1, conv2d_1, ... for
    automatic names (numbered from 1), plus explicit renames (MobileNetV2's top was 'Logits')."""
    counts, names = {}, []
    for layer in keras_model.layers:
        base = _snake(type(layer).__name__)
        if re.fullmatch(re.escape(base) + r"(_\d+)?", layer.name) or type(layer).__name__ == "InputLayer":
            base = "input" if type(layer).__name__ == "InputLayer" else base
            counts[base] = counts.get(base, 0) + 1
            names.append(f"{base}_{counts[base]}")
        else:
            names.append((renames or {}).get(layer.name, layer.name))
    return names


def write_keras2_h5(h5py, keras, path, keras_model, renames=None, dtype=None):
    """Keras 2's save_weights layout, as in vgg16_weights_tf_dim_ordering_tf_kernels.h5: root
    attrs layer_names; group per layer with attrs weight_names; datasets <layer>/<layer>/<w>:0."""
    names = keras2_names(keras_model, renames)
    with h5py.File(path, "w") as file:
        file.attrs["layer_names"] = np.array([n.encode() for n in names])
        file.attrs["backend"], file.attrs["keras_version"] = b"tensorflow", b"2.2.4"
        for layer, name in zip(keras_model.layers, names):
            group = file.create_group(name)
            variables = layer.trainable_weights + layer.non_trainable_weights
            weight_names = [f"{name}/{variable.name}:0" for variable in variables]
            group.attrs["weight_names"] = np.array([n.encode() for n in weight_names])
            for weight_name, variable in zip(weight_names, variables):
                group.create_dataset(weight_name, data=keras.ops.convert_to_numpy(variable).astype(dtype or "float32"))


class KerasCase:
    """One architecture built by Keras with random weights, its output, and its files."""

    def __init__(self, keras, name, folder):
        import h5py

        self.keras, self.h5py, self.name, self.folder = keras, h5py, name, folder
        keras_build, self.build, shape = CASES[name]
        self.model = keras_build(keras)
        rng = np.random.default_rng(len(name))
        randomize(keras, self.model, rng)
        self.x = rng.uniform(0, 1, (1,) + shape).astype("float32")
        self.output = keras.ops.convert_to_numpy(self.model(self.x, training=False))
        self.files = {}

    def file(self, kind):
        if kind not in self.files:
            path = str(self.folder / f"{self.name}{kind}")
            if kind in (".weights.h5", ".keras", "_full.h5"):
                (self.model.save_weights if kind == ".weights.h5" else self.model.save)(path)
            elif kind == "_keras2.h5":
                renames = {"predictions": "Logits"} if self.name == "mobilenet_v2" else None
                write_keras2_h5(self.h5py, self.keras, path, self.model, renames)
            self.files[kind] = path
        return self.files[kind]

    def weights_in_keras_order(self):
        return [self.keras.ops.convert_to_numpy(v) for layer in self.model.layers
                for v in layer.trainable_weights + layer.non_trainable_weights]


@pytest.fixture(scope="module")
def keras_case(keras, tmp_path_factory):
    cases = {}

    def get(name):
        if name not in cases:
            cases[name] = KerasCase(keras, name, tmp_path_factory.mktemp(name))
        return cases[name]

    return get


def convlab_weights_in_keras_order(model):
    return [w.numpy() for layer in keras_layer_order(model) for w in layer.weights]


@pytest.mark.parametrize("name, kind", [
    ("resnet50", ".weights.h5"), ("resnet50", ".keras"), ("resnet50", "_keras2.h5"), ("resnet50", "_full.h5"),
    ("xception", ".keras"), ("xception", "_keras2.h5"),
    ("mobilenet_v2", ".weights.h5"), ("mobilenet_v2", "_keras2.h5"),
    ("vgg16", "_keras2.h5"),
])
def test_keras_file_loads_every_weight_where_keras_has_it(keras_case, name, kind):
    case = keras_case(name)
    model = case.build(weights=case.file(kind))  # applications.X(weights=path) -> model.load_weights(path)
    mine, theirs = convlab_weights_in_keras_order(model), case.weights_in_keras_order()
    assert len(mine) == len(theirs)
    for index, (array, expected) in enumerate(zip(mine, theirs)):
        np.testing.assert_array_equal(array, expected, err_msg=f"weight {index}")


@pytest.mark.parametrize("name, kind", [
    ("resnet50", ".weights.h5"), ("xception", ".keras"), ("mobilenet_v2", "_keras2.h5"), ("vgg16", "_keras2.h5"),
])
def test_model_with_keras_weights_computes_keras_outputs(keras_case, name, kind):
    """One forward pass per architecture (the test above shows every format sets the same weights)."""
    case = keras_case(name)
    model = case.build()
    model.load_weights(case.file(kind))
    assert_close(model(case.x).numpy(), case.output, rtol=1e-4, name=f"{name} output")


def test_keras2_automatic_names_and_a_renamed_top_pair_up_in_keras_order(keras_case):
    """Keras' Xception file names its shortcut convs conv2d_1.. and MobileNetV2's its top
    'Logits': such layers are paired in the model's order, as Keras itself loads them."""
    case = keras_case("xception")
    with case.h5py.File(case.file("_keras2.h5"), "r") as file:
        names = [n.decode() for n in file.attrs["layer_names"]]
    assert names[:2] == ["input_1", "block1_conv1"] and "conv2d_4" in names and "batch_normalization_4" in names
    model = case.build()
    assert {layer.name for layer in model.layers if layer.weights} - set(names)  # some names differ ...
    model.load_weights(case.file("_keras2.h5"))  # ... and still every weight lands where Keras' did
    for mine, theirs in zip(convlab_weights_in_keras_order(model), case.weights_in_keras_order()):
        np.testing.assert_array_equal(mine, theirs)


def assert_fails_and_changes_nothing(model, path, *fragments):
    before = [w.numpy().copy() for w in model.weights]
    with pytest.raises(ValueError) as error:
        model.load_weights(path)
    message = str(error.value)
    for fragment in fragments + ("nothing was loaded",):
        assert fragment in message, message
    for old, variable in zip(before, model.weights):
        np.testing.assert_array_equal(variable.numpy(), old, err_msg=variable.name)
    return message


@pytest.mark.parametrize("kind, file_layer", [
    (".weights.h5", "'dense'"), (".keras", "'predictions'"), ("_keras2.h5", "'predictions'"),
])
def test_a_file_for_other_classes_names_the_layer_and_both_shapes_and_loads_nothing(keras_case, kind, file_layer):
    case = keras_case("resnet50")
    model = case.build(classes=5)
    assert_fails_and_changes_nothing(model, case.file(kind), "layer 'predictions' (Dense)", "kernel",
                                     "expects shape (2048, 5)", "found (2048, 10)", file_layer)


def test_a_file_with_the_top_into_the_base_lists_the_extra_layers(keras_case):
    case = keras_case("vgg16")
    base = applications.vgg16(include_top=False, input_shape=(32, 32, 3))
    message = assert_fails_and_changes_nothing(base, case.file("_keras2.h5"), "3 file layer(s) with weights left over",
                                               "'fc1'", "'fc2'", "'predictions'", "notop")
    assert "kernel:0 (512, 4096)" in message


def test_another_architectures_file_is_refused(keras_case):
    case = keras_case("mobilenet_v2")
    for kind in (".weights.h5", "_keras2.h5"):
        assert_fails_and_changes_nothing(applications.ResNet50(input_shape=(32, 32, 3), classes=10), case.file(kind),
                                         "does not fit the model", "more)")


def test_hdf5_data_that_is_not_a_float_weight_or_lives_in_another_file_is_refused(keras_case, tmp_path):
    case = keras_case("mobilenet_v2")
    h5py = case.h5py
    integers = str(tmp_path / "integers.h5")
    write_keras2_h5(h5py, case.keras, integers, case.model, dtype="int32")
    model = case.build()
    assert_fails_and_changes_nothing(model, integers, "dtype int32, not a floating-point weight")
    linked = str(tmp_path / "linked.h5")
    write_keras2_h5(h5py, case.keras, linked, case.model)
    with h5py.File(linked, "a") as file:
        del file["Conv1"]
        file["Conv1"] = h5py.ExternalLink(case.file("_keras2.h5"), "/Conv1")
    assert_fails_and_changes_nothing(model, linked, "links to another file")


def test_missing_h5py_is_named_with_the_extra_to_install(keras_case, monkeypatch):
    path = keras_case("mobilenet_v2").file(".weights.h5")
    monkeypatch.setitem(sys.modules, "h5py", None)  # import h5py now raises ImportError
    with pytest.raises(ImportError, match=r"needs h5py.*convlab\[keras-weights\]"):
        applications.MobileNetV2(input_shape=(40, 40, 3), classes=10, weights=path)


# ---------------------------------------------------------------- convlab's own files still load


def small_model():
    inputs = convlab.Input(shape=(6, 6, 2))
    x = layers.Conv2D(3, 3, name="conv")(inputs)
    x = layers.BatchNormalization(name="bn")(x)
    return convlab.Model(inputs, layers.Dense(2, name="dense")(layers.Flatten()(x)))


def test_convlab_archives_named_keras_are_told_apart_by_content(tmp_path, rng):
    source, target = small_model(), small_model()
    source.set_weights([rng.uniform(0.5, 1.5, size=w.shape).astype("float32") for w in source.weights])
    source.save_weights(str(tmp_path / "mine.keras"))
    target.load_weights(str(tmp_path / "mine.keras"))
    for mine, theirs in zip(target.get_weights(), source.get_weights()):
        np.testing.assert_array_equal(mine, theirs)


# ---------------------------------------------------------------- PyTorch state dicts, torchvision's names


@pytest.fixture(scope="module")
def torch():
    torch = pytest.importorskip("torch", reason="PyTorch writes the state dicts and is the oracle")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield torch
    torch.set_num_threads(threads)


def torchvision_resnet(torch, blocks=(3, 4, 6, 3), num_classes=1000):
    """torchvision.models.resnet's ResNet with Bottleneck blocks, module for module (same
    state dict keys and shapes), in plain torch.nn."""
    nn = torch.nn

    class Bottleneck(nn.Module):
        def __init__(self, inplanes, planes, stride, downsample):
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(inplanes, planes, 1, bias=False), nn.BatchNorm2d(planes)
            self.conv2, self.bn2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False), nn.BatchNorm2d(planes)
            self.conv3, self.bn3 = nn.Conv2d(planes, 4 * planes, 1, bias=False), nn.BatchNorm2d(4 * planes)
            self.relu, self.downsample = nn.ReLU(), downsample

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.relu(self.bn2(self.conv2(out)))
            return self.relu(self.bn3(self.conv3(out)) + identity)

    class ResNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64)
            self.relu, self.maxpool = nn.ReLU(), nn.MaxPool2d(3, 2, 1)
            inplanes = 64
            for index, (planes, count) in enumerate(zip((64, 128, 256, 512), blocks), start=1):
                stride = 1 if index == 1 else 2
                downsample = nn.Sequential(nn.Conv2d(inplanes, 4 * planes, 1, stride, bias=False),
                                           nn.BatchNorm2d(4 * planes))
                units = [Bottleneck(inplanes, planes, stride, downsample)]
                units += [Bottleneck(4 * planes, planes, 1, None) for _ in range(count - 1)]
                setattr(self, f"layer{index}", nn.Sequential(*units))
                inplanes = 4 * planes
            self.avgpool, self.fc = nn.AdaptiveAvgPool2d((1, 1)), nn.Linear(2048, num_classes)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    return ResNet()


def torchvision_vgg16(torch, num_classes, pooled_size):
    """torchvision.models.vgg16's modules (features.0 .. features.30, avgpool, classifier.0/3/6);
    avgpool to pooled_size and a classifier for it, so that a small input keeps the scheme."""
    nn = torch.nn
    features, channels = [], 3
    for value in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"):
        if value == "M":
            features.append(nn.MaxPool2d(2, 2))
        else:
            features += [nn.Conv2d(channels, value, 3, padding=1), nn.ReLU()]
            channels = value

    class VGG(nn.Module):
        def __init__(self):
            super().__init__()
            self.features, self.avgpool = nn.Sequential(*features), nn.AdaptiveAvgPool2d(pooled_size)
            self.classifier = nn.Sequential(
                nn.Linear(512 * pooled_size * pooled_size, 4096), nn.ReLU(), nn.Dropout(),
                nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(), nn.Linear(4096, num_classes))

        def forward(self, x):
            return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    return VGG()


def randomize_batch_norm(torch, module, seed=0):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for child in module.modules():
            if isinstance(child, torch.nn.BatchNorm2d):
                child.weight.uniform_(0.5, 1.5, generator=generator)
                child.bias.normal_(0, 0.1, generator=generator)
                child.running_mean.normal_(0, 0.1, generator=generator)
                child.running_var.uniform_(0.5, 1.5, generator=generator)
    return module.eval()


def torch_output(torch, module, x):
    with torch.no_grad():
        return module(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))).numpy()


def test_torchvision_resnet_state_dict_gives_torchs_outputs(torch, rng):
    """64x64 input: every stride-2 3x3 conv sees an even size, where torch's symmetric padding
    1 and TensorFlow's 'same' (0 before, 1 after) differ; the explicit ZeroPadding2D matches."""
    torch.manual_seed(0)
    module = randomize_batch_norm(torch, torchvision_resnet(torch, blocks=(1, 2, 1, 1), num_classes=10))
    x = rng.uniform(0, 1, (2, 64, 64, 3)).astype("float32")
    model = applications.torchvision_resnet50(input_shape=(64, 64, 3), classes=10, blocks=(1, 2, 1, 1),
                                              weights=module.state_dict())
    assert_close(model(x).numpy(), torch_output(torch, module, x), rtol=1e-4, name="resnet output")


def test_full_torchvision_resnet50_state_dict_fits_torchvision_resnet50(torch):
    torch.manual_seed(0)
    module = torchvision_resnet(torch)
    assert sum(p.numel() for p in module.parameters()) == 25_557_032  # torchvision's published resnet50 count
    model = applications.torchvision_resnet50()
    load_torch_state_dict(model, module.state_dict())
    state = module.state_dict()
    np.testing.assert_array_equal(model.get_layer("conv1").kernel.numpy(),
                                  state["conv1.weight"].numpy().transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(model.get_layer("fc").kernel.numpy(), state["fc.weight"].numpy().T)
    np.testing.assert_array_equal(model.get_layer("layer4.2.bn3").moving_variance.numpy(),
                                  state["layer4.2.bn3.running_var"].numpy())


def test_torchvision_vgg16_state_dict_loads_into_keras_named_vgg16(torch, rng):
    torch.manual_seed(1)
    module = torchvision_vgg16(torch, num_classes=10, pooled_size=1).eval()  # 32x32 input: 1x1 maps, pooled as is
    model = applications.vgg16(include_top=True, input_shape=(32, 32, 3), classes=10, classifier_activation=None)
    load_torch_state_dict(model, module.state_dict())  # mapping found: Keras names, torchvision keys
    x = rng.uniform(0, 1, (2, 32, 32, 3)).astype("float32")
    assert_close(model(x).numpy(), torch_output(torch, module, x), rtol=1e-4, name="vgg16 output")


def test_linear_after_flatten_reads_torchs_channel_first_order(torch, rng):
    nn = torch.nn
    torch.manual_seed(2)
    module = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 2 * 3, 5)).eval()
    inputs = convlab.Input(shape=(2, 3, 2))
    x = layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs)
    model = convlab.Model(inputs, layers.Dense(5, name="dense")(layers.Flatten()(x)))
    load_torch_state_dict(model, module.state_dict(), mapping={"conv": "0", "dense": "3"})
    x = rng.normal(size=(3, 2, 3, 2)).astype("float32")
    assert_close(model(x).numpy(), torch_output(torch, module, x), rtol=1e-5)


def assert_torch_load_fails_and_changes_nothing(model, state_dict, *fragments, **options):
    before = [w.numpy().copy() for w in model.weights]
    with pytest.raises(ValueError) as error:
        load_torch_state_dict(model, state_dict, **options)
    for fragment in fragments + ("nothing was loaded",):
        assert fragment in str(error.value), str(error.value)
    for old, variable in zip(before, model.weights):
        np.testing.assert_array_equal(variable.numpy(), old, err_msg=variable.name)


def test_torch_state_dict_that_does_not_fit_names_the_layer_and_shapes_and_loads_nothing(torch):
    module = torchvision_resnet(torch, blocks=(1, 1, 1, 1), num_classes=10)
    state = dict(module.state_dict())
    model = applications.torchvision_resnet50(input_shape=(32, 32, 3), classes=5, blocks=(1, 1, 1, 1))
    assert_torch_load_fails_and_changes_nothing(model, state, "layer 'fc' (Dense", "'fc.weight' has shape (10, 2048)",
                                                "expected (5, 2048)")
    model = applications.torchvision_resnet50(input_shape=(32, 32, 3), classes=10, blocks=(1, 1, 1, 1))
    missing = {k: v for k, v in state.items() if k != "layer3.0.bn2.running_var"}
    assert_torch_load_fails_and_changes_nothing(model, missing, "layer 'layer3.0.bn2' (BatchNormalization",
                                                "no 'layer3.0.bn2.running_var' (expected shape (256,))")
    extra = dict(state, **{"aux.weight": torch.zeros(3)})
    assert_torch_load_fails_and_changes_nothing(model, extra, "aux.weight", "strict=False")
    load_torch_state_dict(model, extra, strict=False)
    np.testing.assert_array_equal(model.get_layer("fc").bias.numpy(), state["fc.bias"].numpy())


def test_a_pth_path_is_read_by_the_tensor_only_reader(torch, tmp_path):
    module = torchvision_resnet(torch, blocks=(1, 1, 1, 1), num_classes=10)
    path = tmp_path / "resnet.pth"
    torch.save(module.state_dict(), path)
    model = applications.torchvision_resnet50(input_shape=(32, 32, 3), classes=10, blocks=(1, 1, 1, 1),
                                              weights=str(path))
    np.testing.assert_array_equal(model.get_layer("layer4.0.conv2").kernel.numpy(),
                                  module.state_dict()["layer4.0.conv2.weight"].numpy().transpose(2, 3, 1, 0))
