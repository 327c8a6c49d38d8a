"""model.save / load_model: exact round trips, resumed training, atomic writes, refused archives."""

import io
import json
import os
import pickle
import zipfile

import numpy as np
import pytest

import convlab
from convlab import applications, layers, optimizers, saving, utils
from convlab.models import Model, Sequential, load_model


def bn_model():
    utils.set_seed(0)
    inputs = layers.Input(shape=(10, 10, 3))
    x = layers.Conv2D(4, 3, padding="same", use_bias=False)(inputs)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    residual = x
    x = layers.SeparableConv2D(4, 3, padding="same")(x)
    x = layers.add([x, residual])
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(2, activation="softmax")(x)
    return Model(inputs, outputs)


@pytest.mark.parametrize("make", [
    lambda: applications.mnist_convnet(),
    bn_model,
    lambda: applications.mnist_convnet_first_edition_base(),
    lambda: applications.segmentation_net(img_size=(16, 16)),
])
def test_round_trip_reproduces_predictions_bit_for_bit(tmp_path, rng, make):
    utils.set_seed(1)
    model = make()
    shape = (3,) + model.inputs[0].shape[1:]
    x = rng.random(shape).astype("float32") * 255
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = load_model(path)
    assert type(loaded) is type(model)
    assert [w.name for w in loaded.weights] == [w.name for w in model.weights]
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_training_resumes_with_the_optimizer_state(tmp_path, rng):
    x = rng.random((24, 10, 10, 3)).astype("float32")
    y = rng.integers(0, 2, 24)
    straight = bn_model()
    straight.compile(optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    straight.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)

    first = bn_model()
    first.compile(optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    first.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    first.save(tmp_path / "half.keras")
    resumed = load_model(tmp_path / "half.keras")
    assert isinstance(resumed.optimizer, optimizers.Adam) and resumed.optimizer.iterations == 3
    history = resumed.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    assert "accuracy" in history.history
    for a, b in zip(resumed.get_weights(), straight.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_learning_rate_schedule_and_compile_settings_survive(tmp_path):
    model = applications.mnist_convnet()
    schedule = optimizers.ExponentialDecay(0.01, decay_steps=100, decay_rate=0.9, staircase=True)
    model.compile(optimizers.RMSprop(schedule, momentum=0.5), "sparse_categorical_crossentropy",
                  metrics=["accuracy", convlab.metrics.MeanIoU(num_classes=10, sparse_y_pred=False)])
    model.save(tmp_path / "m.keras")
    loaded = load_model(tmp_path / "m.keras")
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert [m.get_config() for m in loaded._metrics[0]] == [m.get_config() for m in model._metrics[0]]
    assert load_model(tmp_path / "m.keras", compile=False).optimizer is None


def test_weights_only_round_trip_and_shape_mismatch(tmp_path, rng):
    model = applications.mnist_convnet()
    model.save_weights(tmp_path / "w.weights.keras")
    utils.set_seed(9)
    other = applications.mnist_convnet()
    other.load_weights(tmp_path / "w.weights.keras")
    for a, b in zip(other.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="holds 8 weights, model .* has 2"):
        Sequential([layers.Input(shape=(4,)), layers.Dense(2)]).load_weights(tmp_path / "w.weights.keras")
    with pytest.raises(ValueError, match="holds only weights"):
        load_model(tmp_path / "w.weights.keras")


def test_a_crash_mid_save_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "model.keras"
    model = applications.mnist_convnet()
    model.save(path)
    before = path.read_bytes()
    calls = []
    original = zipfile.ZipFile.writestr

    def crash_after_two(self, name, data, *args, **kwargs):
        calls.append(name)
        if len(calls) > 2:
            raise OSError("disk full")
        return original(self, name, data, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "writestr", crash_after_two)
    utils.set_seed(5)
    with pytest.raises(OSError, match="disk full"):
        applications.mnist_convnet().save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.keras"]  # no temporary file left behind


def test_a_saved_file_gets_ordinary_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        path = tmp_path / "model.keras"
        applications.mnist_convnet().save(path)
        assert os.stat(path).st_mode & 0o777 == 0o644
        os.chmod(path, 0o600)
        applications.mnist_convnet().save(path)  # overwriting keeps the file's own mode
        assert os.stat(path).st_mode & 0o777 == 0o600
    finally:
        os.umask(umask)


def craft(path, members):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def saved_members(tmp_path):
    path = tmp_path / "good.keras"
    Sequential([layers.Input(shape=(3,)), layers.Dense(2)]).save(path)
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


class Exploit:
    """Unpickling this would create a marker file: the test checks that it never happens."""

    marker = None

    def __reduce__(self):
        return (open, (Exploit.marker, "w"))


@pytest.mark.parametrize("name", ["payload.pkl", "../escape.npy", "/etc/passwd", "weights/../../x.npy",
                                  "weights\\0000.npy"])
def test_archives_with_unexpected_member_names_are_refused(tmp_path, name):
    members = saved_members(tmp_path)
    members[name] = b"anything"
    craft(tmp_path / "bad.keras", members)
    with pytest.raises(saving.UnsafeArchiveError, match="unexpected member"):
        load_model(tmp_path / "bad.keras")


def test_an_object_array_is_refused_and_never_unpickled(tmp_path):
    Exploit.marker = str(tmp_path / "pwned")
    members = saved_members(tmp_path)
    buffer = io.BytesIO()
    np.save(buffer, np.array([Exploit()], dtype=object), allow_pickle=True)
    members["weights/0000.npy"] = buffer.getvalue()
    craft(tmp_path / "bad.keras", members)
    with pytest.raises(saving.UnsafeArchiveError, match="never unpickles"):
        load_model(tmp_path / "bad.keras")
    assert not os.path.exists(Exploit.marker)
    # the same payload as a plain pickle in place of config.json is not JSON and is refused too
    members = saved_members(tmp_path)
    members["config.json"] = pickle.dumps(Exploit())
    craft(tmp_path / "bad2.keras", members)
    with pytest.raises(saving.UnsafeArchiveError, match="not valid JSON"):
        load_model(tmp_path / "bad2.keras")
    assert not os.path.exists(Exploit.marker)


def test_config_naming_unknown_classes_or_wrong_shapes_is_refused(tmp_path):
    members = saved_members(tmp_path)
    document = json.loads(members["config.json"])
    document["model"]["config"]["layers"][0]["class_name"] = "os.system"
    craft(tmp_path / "a.keras", dict(members, **{"config.json": json.dumps(document)}))
    with pytest.raises(ValueError, match="unknown layer class 'os.system'"):
        load_model(tmp_path / "a.keras")
    document = json.loads(members["config.json"])
    document["weights"][0]["shape"] = [4, 2]
    craft(tmp_path / "b.keras", dict(members, **{"config.json": json.dumps(document)}))
    with pytest.raises(ValueError, match=r"has shape \(3, 2\), config.json says \(4, 2\)"):
        load_model(tmp_path / "b.keras")
    (tmp_path / "c.keras").write_bytes(b"not a zip at all")
    with pytest.raises(saving.UnsafeArchiveError, match="is not a convlab saved model"):
        load_model(tmp_path / "c.keras")
    with pytest.raises(FileNotFoundError, match="no saved model"):
        load_model(tmp_path / "missing.keras")
