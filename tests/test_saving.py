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


def randomize_weights(model, rng):
    """Set every weight, biases and batch-norm statistics included, to random values (positive
    variances), so that no weight holds what building the model gives it: a loader that skipped
    a weight would leave a difference behind. Checked here against a fresh build's values."""
    built = model.get_weights()
    model.set_weights([
        rng.uniform(0.5, 1.5, w.shape).astype(w.dtype) if w.name.endswith("moving_variance")
        else (rng.standard_normal(w.shape) * 0.1).astype(w.dtype)
        for w in model.weights
    ])
    for weight, initial, now in zip(model.weights, built, model.get_weights()):
        assert not np.any(initial == now), weight.name
    return model


def assert_same_weights(loaded, model, same_names=True):
    if same_names:
        assert [w.name for w in loaded.weights] == [w.name for w in model.weights]
    for weight, a, b in zip(model.weights, loaded.get_weights(), model.get_weights()):
        assert a.dtype == b.dtype, weight.name
        np.testing.assert_array_equal(a, b, err_msg=weight.name)


@pytest.mark.parametrize("make", [
    lambda: applications.mnist_convnet(),
    bn_model,
    lambda: applications.mnist_convnet_first_edition_base(),
    lambda: applications.segmentation_net(img_size=(16, 16)),
])
def test_round_trip_reproduces_predictions_bit_for_bit(tmp_path, rng, make):
    utils.set_seed(1)
    model = randomize_weights(make(), rng)
    shape = (3,) + model.inputs[0].shape[1:]
    x = rng.random(shape).astype("float32") * 255
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = load_model(path)
    assert type(loaded) is type(model)
    assert_same_weights(loaded, model)
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


@pytest.mark.parametrize("make", [applications.mnist_convnet, bn_model])
def test_weights_only_round_trip_and_shape_mismatch(tmp_path, rng, make):
    model = randomize_weights(make(), rng)
    model.save_weights(tmp_path / "w.weights.keras")
    utils.set_seed(9)
    other = make()
    other.load_weights(tmp_path / "w.weights.keras")
    assert_same_weights(other, model, same_names=False)  # another build: other layer names, same arrays
    if make is bn_model:
        return
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


# --------------------------------------------------------------------------- hostile and damaged files


def dense_model():
    return Sequential([layers.Input(shape=(3,)), layers.Dense(2, name="dense")], name="small")


def npy(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@pytest.mark.parametrize("member, what", [("weights/0000.npy", "weight"), ("optimizer/0000.npy", "optimizer slot")])
def test_a_member_whose_header_does_not_fit_the_model_is_refused_before_its_data_is_read(tmp_path, member, what):
    import tracemalloc

    model = dense_model()
    model.compile(optimizers.Adam(), "mse")
    model.save(tmp_path / "good.keras")
    with zipfile.ZipFile(tmp_path / "good.keras") as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    huge = np.zeros(2**24, np.float32)  # 64 MiB that deflate packs into a few hundred KiB
    members[member] = npy(huge)
    if member.startswith("weights/"):
        document = json.loads(members["config.json"])
        document["weights"][0]["shape"] = [2**24]  # config.json agrees with the member: only the model can tell
        members["config.json"] = json.dumps(document).encode()
    del huge
    with zipfile.ZipFile(tmp_path / "huge.keras", "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    del members
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=rf"huge.keras.*{what}.*\(16777216,\).*\(3, 2\)"):
            load_model(tmp_path / "huge.keras")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20  # the 64 MiB the header claims were never allocated


def test_a_member_shorter_than_its_header_says_is_refused(tmp_path):
    members = saved_members(tmp_path)
    members["weights/0000.npy"] = members["weights/0000.npy"][:-8]  # (3, 2) float32 needs 24 bytes of data
    craft(tmp_path / "short.keras", members)
    with pytest.raises(saving.CorruptArchiveError, match=r"short.keras.*weights/0000.npy declares shape \(3, 2\) "
                                                         r"of float32 \(24 bytes\) but holds 16 bytes"):
        load_model(tmp_path / "short.keras")


def test_a_weight_stored_in_another_dtype_is_refused(tmp_path):
    members = saved_members(tmp_path)
    members["weights/0000.npy"] = npy(np.zeros((3, 2), np.float64))
    document = json.loads(members["config.json"])
    document["weights"][0]["dtype"] = "float64"
    members["config.json"] = json.dumps(document).encode()
    craft(tmp_path / "f64.keras", members)
    with pytest.raises(ValueError, match=r"f64.keras.*stored as float64, model weight 'dense_\d+/kernel' is float32"):
        load_model(tmp_path / "f64.keras")


def test_damaged_archives_say_what_is_wrong_and_name_the_file(tmp_path):
    model = bn_model()
    path = tmp_path / "model.keras"
    model.save(path)
    data = path.read_bytes()
    (tmp_path / "truncated.keras").write_bytes(data[:len(data) // 2])
    with pytest.raises(saving.CorruptArchiveError, match=r"'.*truncated.keras' is a truncated zip archive "
                                                         rf"\({len(data) // 2} bytes"):
        load_model(tmp_path / "truncated.keras")
    (tmp_path / "empty.keras").write_bytes(b"")
    with pytest.raises(saving.CorruptArchiveError, match=r"empty.keras' is empty \(0 bytes\)"):
        load_model(tmp_path / "empty.keras")
    (tmp_path / "folder.keras").mkdir()
    with pytest.raises(IsADirectoryError, match=r"folder.keras' is a directory"):
        load_model(tmp_path / "folder.keras")
    # one flipped byte in the middle of a member's compressed bytes: its CRC (or deflate) fails
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("weights/0002.npy")
    local_header = 30 + len(info.filename.encode()) + int.from_bytes(data[info.header_offset + 28:
                                                                          info.header_offset + 30], "little")
    at = info.header_offset + local_header + info.compress_size // 2
    damaged = bytearray(data)
    damaged[at] ^= 0xFF
    (tmp_path / "damaged.keras").write_bytes(bytes(damaged))
    for load in (load_model, model.load_weights):
        with pytest.raises(saving.CorruptArchiveError, match=r"damaged.keras': member 'weights/0002.npy' is corrupt"):
            load(tmp_path / "damaged.keras")


def test_a_negative_moving_variance_in_a_file_is_refused_naming_file_layer_and_channel(tmp_path, rng):
    model = randomize_weights(bn_model(), rng)
    (norm,) = [layer for layer in model.layers if isinstance(layer, layers.BatchNormalization)]
    variance = norm.moving_variance.numpy().copy()
    variance[2] = -0.25
    norm.moving_variance.assign(variance)  # as a hand-edited or foreign file might hold it
    model.save(tmp_path / "negative.keras")
    with pytest.raises(ValueError, match=rf"negative.keras.*'{norm.name}'.*got -0.25 in channel 2"):
        load_model(tmp_path / "negative.keras")
    other = bn_model()
    before = other.get_weights()
    with pytest.raises(ValueError, match="got -0.25 in channel 2"):
        other.load_weights(tmp_path / "negative.keras")
    for kept, original in zip(other.get_weights(), before):  # a failed load changes nothing
        np.testing.assert_array_equal(kept, original)


def test_saving_onto_a_directory_or_into_an_unwritable_one_names_the_target(tmp_path, monkeypatch):
    import tempfile

    model = dense_model()
    target = tmp_path / "taken"
    target.mkdir()
    with pytest.raises(IsADirectoryError) as caught:
        model.save(target)
    assert f"cannot write {str(target)!r}: it is a directory" in str(caught.value) and ".tmp" not in str(caught.value)
    locked = tmp_path / "locked"
    locked.mkdir()
    if os.geteuid() != 0:
        locked.chmod(0o500)
    else:  # root writes anywhere: the refusal the OS gives a user is played here
        def refuse(*args, dir=None, **kwargs):
            raise PermissionError(13, "Permission denied", os.path.join(dir, ".model.keras.x1y2z3.tmp"))

        monkeypatch.setattr(tempfile, "mkstemp", refuse)
    try:
        with pytest.raises(PermissionError) as caught:
            model.save(locked / "model.keras")
    finally:
        locked.chmod(0o700)
    message = str(caught.value)
    assert f"cannot write {str(locked / 'model.keras')!r}: no permission" in message and ".tmp" not in message
