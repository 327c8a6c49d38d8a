"""convlab.data: image file utilities and the lazy image_dataset_from_directory.

References are computed another way: pixel values are written into the files by the tests
(solid colours that encode class and file), resizes are pillow's own, the scaling formula
and Keras' split and shuffle rules are written out here.
"""

import math
import os
import warnings

import numpy as np
import pytest
from PIL import Image

from convlab.data import (ImageDataset, array_to_img, image_dataset_from_directory, img_to_array, load_img,
                          save_img)


# --------------------------------------------------------------------------- image utilities


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_save_img_then_load_img_round_trips_a_png_exactly(tmp_path, rng, channels):
    x = rng.integers(0, 256, size=(7, 9, channels)).astype(np.uint8)
    path = tmp_path / "picture.png"
    save_img(path, x, scale=False)
    color_mode = {1: "grayscale", 3: "rgb", 4: "rgba"}[channels]
    loaded = img_to_array(load_img(path, color_mode=color_mode))
    assert loaded.dtype == np.float32 and loaded.shape == (7, 9, channels)
    np.testing.assert_array_equal(loaded, x.astype(np.float32))


def test_grayscale_load_has_one_channel_of_itu_601_luma(tmp_path, rng):
    x = rng.integers(0, 256, size=(5, 6, 3)).astype(np.uint8)
    Image.fromarray(x, "RGB").save(tmp_path / "colour.png")
    gray = img_to_array(load_img(tmp_path / "colour.png", color_mode="grayscale"))
    assert gray.shape == (5, 6, 1)
    # Pillow's documented RGB -> L transform: L = R * 299/1000 + G * 587/1000 + B * 114/1000.
    luma = x.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    assert np.abs(gray[..., 0] - luma).max() <= 1.0


@pytest.mark.parametrize("interpolation, pillow_filter",
                         [("nearest", Image.Resampling.NEAREST), ("bilinear", Image.Resampling.BILINEAR),
                          ("bicubic", Image.Resampling.BICUBIC)])
def test_target_size_is_height_width_and_matches_pillow_resize(tmp_path, rng, interpolation, pillow_filter):
    x = rng.integers(0, 256, size=(10, 20, 3)).astype(np.uint8)
    Image.fromarray(x).save(tmp_path / "wide.png")
    resized = img_to_array(load_img(tmp_path / "wide.png", target_size=(5, 8), interpolation=interpolation))
    assert resized.shape == (5, 8, 3)
    expected = np.asarray(Image.fromarray(x).resize((8, 5), pillow_filter))  # pillow takes (width, height)
    np.testing.assert_array_equal(resized, expected.astype(np.float32))


def test_keep_aspect_ratio_crops_the_centered_window_before_resizing(tmp_path, rng):
    x = rng.integers(0, 256, size=(10, 20, 3)).astype(np.uint8)
    Image.fromarray(x).save(tmp_path / "wide.png")
    cropped = img_to_array(load_img(tmp_path / "wide.png", target_size=(5, 5), interpolation="bilinear",
                                    keep_aspect_ratio=True))
    # A square window of a 10 x 20 picture: all 10 rows, columns 5..14.
    window = Image.fromarray(np.ascontiguousarray(x[:, 5:15]))
    expected = np.asarray(window.resize((5, 5), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(cropped, expected.astype(np.float32))


def test_array_to_img_scale_maps_min_to_0_and_max_to_255_by_keras_formula(rng):
    x = rng.normal(3.0, 7.0, size=(6, 5, 3))
    img = array_to_img(x)
    assert img.mode == "RGB"
    got = np.asarray(img)
    # Keras: x -= min; x /= max; x *= 255; astype(uint8), in float32.
    shifted = x.astype(np.float32) - np.float32(x.min())
    expected = (shifted / shifted.max() * np.float32(255)).astype(np.uint8)
    np.testing.assert_array_equal(got, expected)
    assert got.reshape(-1)[np.argmin(x)] == 0 and got.reshape(-1)[np.argmax(x)] == 255


def test_array_to_img_without_scale_keeps_values_and_picks_mode_by_channels(rng):
    gray = rng.integers(0, 256, size=(4, 3, 1)).astype(np.float32)
    assert array_to_img(gray, scale=False).mode == "L"
    np.testing.assert_array_equal(np.asarray(array_to_img(gray, scale=False)), gray[..., 0].astype(np.uint8))
    wide = np.full((2, 2, 1), 1000.0)
    wide_img = array_to_img(wide, scale=False)
    assert wide_img.mode == "I" and np.asarray(wide_img).max() == 1000
    assert array_to_img(rng.random((2, 2, 4))).mode == "RGBA"
    flat = array_to_img(np.full((3, 3, 3), 7.0))  # max == min: no division, all zeros (as Keras)
    assert np.asarray(flat).max() == 0


def test_channels_first_is_the_transpose_of_channels_last(rng):
    x = rng.integers(0, 256, size=(4, 5, 3)).astype(np.uint8)
    img = Image.fromarray(x)
    first = img_to_array(img, data_format="channels_first")
    np.testing.assert_array_equal(first, x.transpose(2, 0, 1).astype(np.float32))
    np.testing.assert_array_equal(np.asarray(array_to_img(first, data_format="channels_first", scale=False)), x)


def _read_png(path):
    with Image.open(path) as img:
        return np.asarray(img)


def test_save_img_is_atomic_and_leaves_no_temporary_files(tmp_path, rng, monkeypatch):
    path = tmp_path / "out.png"
    first = rng.integers(0, 256, size=(4, 4, 3)).astype(np.uint8)
    save_img(path, first, scale=False)
    save_img(path, first[::-1], scale=False)  # replaces the file in place
    assert os.listdir(tmp_path) == ["out.png"]
    np.testing.assert_array_equal(_read_png(path), first[::-1])

    def failing_save(self, fp, *args, **kwargs):
        fp.write(b"\x89PNG half written")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_img(path, first, scale=False)
    assert os.listdir(tmp_path) == ["out.png"]  # the old picture is untouched, the temporary file removed
    monkeypatch.undo()
    np.testing.assert_array_equal(_read_png(path), first[::-1])


def test_save_img_as_jpeg_drops_alpha_with_a_warning(tmp_path, rng):
    x = rng.integers(0, 256, size=(8, 8, 4)).astype(np.uint8)
    with pytest.warns(UserWarning, match="alpha"):
        save_img(tmp_path / "photo.jpg", x, scale=False)
    with Image.open(tmp_path / "photo.jpg") as written:
        assert written.mode == "RGB"


def test_image_utilities_name_the_bad_argument(tmp_path):
    missing = tmp_path / "nowhere.png"
    with pytest.raises(FileNotFoundError, match="nowhere.png"):
        load_img(missing)
    Image.new("RGB", (2, 2)).save(tmp_path / "ok.png")
    with pytest.raises(ValueError, match=r"color_mode.*'grayscale'.*'hsv'"):
        load_img(tmp_path / "ok.png", color_mode="hsv")
    with pytest.raises(ValueError, match=r"target_size.*\(height, width\).*\(0, 3\)"):
        load_img(tmp_path / "ok.png", target_size=(0, 3))
    with pytest.raises(ValueError, match=r"interpolation.*'cubic'"):
        load_img(tmp_path / "ok.png", target_size=(2, 2), interpolation="cubic")
    with pytest.raises(ValueError, match=r"rank 3.*\(4, 4\)"):
        array_to_img(np.zeros((4, 4)))
    with pytest.raises(ValueError, match=r"1, 3 or 4 channels.*got 2"):
        array_to_img(np.zeros((4, 4, 2)))
    with pytest.raises(ValueError, match=r"path.*picture\.xyz.*extension"):
        save_img(tmp_path / "picture.xyz", np.zeros((2, 2, 3)))
    with pytest.raises(FileNotFoundError, match="missing_folder"):
        save_img(tmp_path / "missing_folder" / "a.png", np.zeros((2, 2, 3)))


def test_a_file_that_is_not_an_image_or_is_truncated_is_named_in_one_line(tmp_path, rng):
    Image.fromarray(rng.integers(0, 256, (40, 40, 3)).astype(np.uint8)).save(tmp_path / "good.png")
    good = (tmp_path / "good.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(good[:len(good) // 2])
    (tmp_path / "letter.png").write_text("Dear reader, this is text.")
    (tmp_path / "empty.jpg").write_bytes(b"")
    cases = [("truncated.png", rf"is a truncated or corrupt PNG image \({len(good) // 2} bytes"),
             ("letter.png", r"is not an image file pillow can read \(26 bytes"),
             ("empty.jpg", r"is not an image file pillow can read \(0 bytes")]
    for name, what in cases:
        path = str(tmp_path / name)
        with pytest.raises(ValueError, match=rf"^load_img: '{path}' {what}") as caught:
            load_img(path)
        assert "\n" not in str(caught.value) and "BytesIO" not in str(caught.value)
    with open(tmp_path / "letter.png", "rb") as file:  # a file object is named by its .name
        with pytest.raises(ValueError, match=r"the file object '.*letter.png' is not an image"):
            load_img(file)


# --------------------------------------------------------------------------- directory datasets

HEIGHT, WIDTH = 6, 8


def _solid(path, red, green, blue=7):
    """A PNG of one colour: (red, green) tell which class and file the test wrote."""
    Image.fromarray(np.full((HEIGHT, WIDTH, 3), (red, green, blue), dtype=np.uint8)).save(path)


def _make_tree(root, counts):
    """Class folders named in `counts` (written in the given order); class c's files have red 40*c+1
    (c = index in sorted order) and green = the file's number. Returns {path: class index}."""
    sorted_names = sorted(counts)
    written = {}
    for name, count in counts.items():
        folder = root / name
        folder.mkdir()
        for number in range(count):
            path = folder / f"img_{number:03d}.png"
            _solid(path, 40 * sorted_names.index(name) + 1, number)
            written[str(path)] = sorted_names.index(name)
    return written


def _keras_order(root, counts, seed):
    """The file list Keras builds: classes sorted, files sorted, then RandomState(seed).shuffle."""
    files = [os.path.join(str(root), name, f"img_{number:03d}.png")
             for name in sorted(counts) for number in range(counts[name])]
    np.random.RandomState(seed).shuffle(files)
    return files


COUNTS = {"zebra": 5, "ant": 4, "moose": 3}


def _all_batches(dataset):
    images, labels = zip(*list(dataset))
    return np.concatenate(images), np.concatenate(labels)


def test_class_names_are_the_sorted_subfolders_and_labels_follow_the_folders(tmp_path, capsys):
    _make_tree(tmp_path, COUNTS)
    dataset = image_dataset_from_directory(tmp_path, image_size=(HEIGHT, WIDTH), batch_size=5, seed=3)
    assert "Found 12 files belonging to 3 classes." in capsys.readouterr().out
    assert isinstance(dataset, ImageDataset)
    assert dataset.class_names == ["ant", "moose", "zebra"]
    images, labels = _all_batches(dataset)
    assert images.dtype == np.float32 and images.shape == (12, HEIGHT, WIDTH, 3)
    assert labels.dtype == np.int32
    np.testing.assert_array_equal(labels, (images[:, 0, 0, 0].astype(int) - 1) // 40)
    # every file exactly once per epoch (green = file number within its class)
    seen = sorted(zip(labels.tolist(), images[:, 0, 0, 1].astype(int).tolist()))
    assert seen == sorted((c, n) for c, name in enumerate(sorted(COUNTS)) for n in range(COUNTS[name]))


def test_seeded_file_order_is_keras_shuffle_of_the_sorted_listing(tmp_path):
    _make_tree(tmp_path, COUNTS)
    dataset = image_dataset_from_directory(tmp_path, image_size=(HEIGHT, WIDTH), seed=11, verbose=False)
    assert dataset.file_paths == _keras_order(tmp_path, COUNTS, 11)
    unshuffled = image_dataset_from_directory(tmp_path, image_size=(HEIGHT, WIDTH), shuffle=False, batch_size=12,
                                              verbose=False)
    sorted_files = [os.path.join(str(tmp_path), name, f"img_{i:03d}.png")
                    for name in sorted(COUNTS) for i in range(COUNTS[name])]
    assert unshuffled.file_paths == sorted_files
    (images, labels), = list(unshuffled)
    np.testing.assert_array_equal(labels, [0] * 4 + [1] * 3 + [2] * 5)
    np.testing.assert_array_equal(images[:, 0, 0, 1], [0, 1, 2, 3, 0, 1, 2, 0, 1, 2, 3, 4])


@pytest.mark.parametrize("split", [0.25, 0.3, 0.5])
def test_validation_split_takes_int_split_times_n_files_from_the_end(tmp_path, capsys, split):
    _make_tree(tmp_path, COUNTS)
    order = _keras_order(tmp_path, COUNTS, 5)
    num_validation = int(split * len(order))
    training, validation = image_dataset_from_directory(
        tmp_path, image_size=(HEIGHT, WIDTH), seed=5, validation_split=split, subset="both", batch_size=4)
    out = capsys.readouterr().out
    assert f"Using {len(order) - num_validation} files for training." in out
    assert f"Using {num_validation} files for validation." in out
    assert training.file_paths == order[:len(order) - num_validation]
    assert validation.file_paths == order[len(order) - num_validation:]
    assert set(training.file_paths).isdisjoint(validation.file_paths)
    assert set(training.file_paths) | set(validation.file_paths) == set(order)
    alone = image_dataset_from_directory(tmp_path, image_size=(HEIGHT, WIDTH), seed=5, validation_split=split,
                                         subset="validation", verbose=False)
    assert alone.file_paths == validation.file_paths
    assert len(training) == math.ceil((len(order) - num_validation) / 4)


def test_same_seed_repeats_every_epoch_and_each_epoch_is_a_new_order(tmp_path):
    written = _make_tree(tmp_path, COUNTS)
    first = image_dataset_from_directory(tmp_path, image_size=(HEIGHT, WIDTH), batch_size=5, seed=8, verbose=False)
    second = image_dataset_from_directory(tmp_path, image_size=(HEIGHT, WIDTH), batch_size=5, seed=8, verbose=False)
    epochs_first = [_all_batches(first) for _ in range(2)]
    epochs_second = [_all_batches(second) for _ in range(2)]
    for (a_images, a_labels), (b_images, b_labels) in zip(epochs_first, epochs_second):
        np.testing.assert_array_equal(a_images, b_images)
        np.testing.assert_array_equal(a_labels, b_labels)
    key = lambda images: list(zip(images[:, 0, 0, 0].tolist(), images[:, 0, 0, 1].tolist()))
    epoch_1, epoch_2 = key(epochs_first[0][0]), key(epochs_first[1][0])
    assert epoch_1 != epoch_2 and sorted(epoch_1) == sorted(epoch_2)
    assert len(epoch_1) == len(written)


def test_len_is_ceil_of_files_over_batch_size_and_the_last_batch_is_smaller(tmp_path):
    _make_tree(tmp_path, COUNTS)
    dataset = image_dataset_from_directory(tmp_path, image_size=(HEIGHT, WIDTH), batch_size=5, seed=1, verbose=False)
    sizes = [images.shape[0] for images, _ in dataset]
    assert len(dataset) == math.ceil(12 / 5) == len(sizes)
    assert sizes == [5, 5, 2]
    taken = dataset.take(2)
    assert len(taken) == 2 and [images.shape[0] for images, _ in taken] == [5, 5]


def test_take_of_an_unshuffled_dataset_gives_its_first_batches(tmp_path):
    _make_tree(tmp_path, COUNTS)
    dataset = image_dataset_from_directory(tmp_path, image_size=(HEIGHT, WIDTH), batch_size=3, shuffle=False,
                                           verbose=False)
    whole = list(dataset)
    part = list(dataset.take(2))
    assert len(part) == 2
    for (a, la), (b, lb) in zip(part, whole[:2]):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)


def test_label_modes_give_keras_shapes_and_dtypes(tmp_path):
    _make_tree(tmp_path, COUNTS)
    common = dict(image_size=(HEIGHT, WIDTH), batch_size=12, shuffle=False, verbose=False)
    (_, ints), = list(image_dataset_from_directory(tmp_path, label_mode="int", **common))
    (_, onehot), = list(image_dataset_from_directory(tmp_path, label_mode="categorical", **common))
    assert onehot.dtype == np.float32 and onehot.shape == (12, 3)
    np.testing.assert_array_equal(onehot, np.eye(3, dtype=np.float32)[ints])
    (images_only,) = list(image_dataset_from_directory(tmp_path, label_mode=None, **common))
    assert isinstance(images_only, np.ndarray) and images_only.shape == (12, HEIGHT, WIDTH, 3)


def test_binary_labels_are_float_column_and_need_exactly_two_classes(tmp_path):
    _make_tree(tmp_path, {"cats": 3, "dogs": 2})
    dataset = image_dataset_from_directory(tmp_path, label_mode="binary", image_size=(HEIGHT, WIDTH), shuffle=False,
                                           verbose=False)
    (images, labels), = list(dataset)
    assert labels.dtype == np.float32 and labels.shape == (5, 1)
    np.testing.assert_array_equal(labels[:, 0], (images[:, 0, 0, 0] - 1) / 40)
    (tmp_path / "birds").mkdir()
    _solid(tmp_path / "birds" / "b.png", 0, 0)
    with pytest.raises(ValueError, match=r"binary.*exactly 2 classes.*got 3"):
        image_dataset_from_directory(tmp_path, label_mode="binary", verbose=False)


def test_color_modes_and_resizing_match_pillow(tmp_path, rng):
    folder = tmp_path / "only"
    folder.mkdir()
    x = rng.integers(0, 256, size=(9, 13, 3)).astype(np.uint8)
    Image.fromarray(x).save(folder / "a.png")
    for color_mode, channels in (("grayscale", 1), ("rgb", 3), ("rgba", 4)):
        (images, _), = list(image_dataset_from_directory(tmp_path, color_mode=color_mode, image_size=(4, 5),
                                                         verbose=False, shuffle=False))
        assert images.shape == (1, 4, 5, channels)
    (images, _), = list(image_dataset_from_directory(tmp_path, image_size=(4, 5), verbose=False, shuffle=False))
    expected = np.asarray(Image.fromarray(x).resize((5, 4), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(images[0], expected.astype(np.float32))


def test_listing_keeps_image_extensions_of_any_case_and_walks_subfolders(tmp_path):
    folder = tmp_path / "things"
    (folder / "nested").mkdir(parents=True)
    image = Image.new("RGB", (4, 4), (10, 20, 30))
    kept = ["a.png", "b.JPG", "c.jpeg", "d.bmp", "e.gif", "nested/f.PNG"]
    for name in kept:
        image.save(folder / name, format={"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "bmp": "BMP",
                                          "gif": "GIF"}[name.rsplit(".", 1)[1].lower()])
    for name in ("notes.txt", "g.webp", "h.tiff"):
        (folder / name).write_bytes(b"not listed")
    dataset = image_dataset_from_directory(tmp_path, image_size=(4, 4), shuffle=False, verbose=False)
    assert sorted(os.path.relpath(p, folder) for p in dataset.file_paths) == sorted(kept)
    (images, labels), = list(dataset)
    assert images.shape == (6, 4, 4, 3)
    np.testing.assert_allclose(images.reshape(-1, 3).mean(axis=0), [10, 20, 30], atol=2)  # jpeg is lossy


def test_corrupt_and_non_image_files_are_warned_by_name_and_skipped(tmp_path):
    written = _make_tree(tmp_path, {"cats": 4, "dogs": 3})
    good_png = (tmp_path / "cats" / "img_000.png").read_bytes()
    broken = tmp_path / "cats" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    truncated = tmp_path / "dogs" / "truncated.png"
    truncated.write_bytes(good_png[:len(good_png) // 2])
    text = tmp_path / "dogs" / "letter.jpg"
    text.write_text("Dear reader, this is text.")
    bad = {str(broken), str(truncated), str(text)}
    dataset = image_dataset_from_directory(tmp_path, image_size=(HEIGHT, WIDTH), batch_size=4, seed=2, verbose=False)
    assert len(dataset) == math.ceil(10 / 4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        images, labels = _all_batches(dataset)
    messages = [str(w.message) for w in caught]
    for path in bad:
        assert sum(path in message for message in messages) == 1, (path, messages)
    assert len(images) == len(written) == 7
    np.testing.assert_array_equal(labels, (images[:, 0, 0, 0].astype(int) - 1) // 40)
    assert set(dataset.skipped_files) == bad
    assert set(dataset.file_paths) == set(written)
    assert len(dataset) == math.ceil(7 / 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second epoch does not meet the bad files again
        assert sum(batch.shape[0] for batch, _ in dataset) == 7


def test_batches_are_decoded_lazily_one_batch_at_a_time(tmp_path, monkeypatch):
    _make_tree(tmp_path, {"a": 10, "b": 10})
    opened = []
    real_open = Image.open

    def counting_open(fp, *args, **kwargs):
        opened.append(fp)
        return real_open(fp, *args, **kwargs)

    monkeypatch.setattr(Image, "open", counting_open)
    dataset = image_dataset_from_directory(tmp_path, image_size=(HEIGHT, WIDTH), batch_size=3, seed=0, verbose=False)
    assert opened == []  # listing the folder decodes nothing
    batches = iter(dataset)
    next(batches)
    assert len(opened) == 3
    next(batches)
    assert len(opened) == 6


def test_explicit_labels_and_no_labels_walk_the_whole_directory(tmp_path):
    _solid(tmp_path / "b.png", 1, 0)
    _solid(tmp_path / "a.png", 2, 0)
    (tmp_path / "sub").mkdir()
    _solid(tmp_path / "sub" / "c.png", 3, 0)
    # labels follow the sorted file paths: a.png, b.png, sub/c.png
    dataset = image_dataset_from_directory(tmp_path, labels=[0, 4, 4], image_size=(HEIGHT, WIDTH), shuffle=False,
                                           verbose=False)
    assert dataset.class_names == ["0", "4"]
    (images, labels), = list(dataset)
    np.testing.assert_array_equal(images[:, 0, 0, 0], [2, 1, 3])
    np.testing.assert_array_equal(labels, [0, 4, 4])
    (unlabelled,) = list(image_dataset_from_directory(tmp_path, labels=None, image_size=(HEIGHT, WIDTH),
                                                      shuffle=False, verbose=False))
    np.testing.assert_array_equal(unlabelled[:, 0, 0, 0], [2, 1, 3])


def test_bad_arguments_raise_value_errors_that_name_them(tmp_path):
    with pytest.raises(ValueError, match=r"directory .*nowhere.* does not exist"):
        image_dataset_from_directory(tmp_path / "nowhere")
    _solid(tmp_path / "loose.png", 0, 0)
    with pytest.raises(ValueError, match="no class subfolders"):
        image_dataset_from_directory(tmp_path)
    _make_tree(tmp_path, {"cats": 2, "dogs": 2})
    cases = [
        (dict(validation_split=0.0, subset="training", seed=1), r"validation_split.*between 0 and 1.*0\.0"),
        (dict(validation_split=1.5, subset="training", seed=1), r"validation_split.*between 0 and 1.*1\.5"),
        (dict(subset="training", seed=1), r"validation_split and subset go together.*validation_split=None"),
        (dict(validation_split=0.2, seed=1), r"validation_split and subset go together.*subset=None"),
        (dict(validation_split=0.2, subset="testing", seed=1), r"subset.*'testing'"),
        (dict(validation_split=0.2, subset="training"), r"seed must be given"),
        (dict(image_size=(0, 5)), r"image_size.*\(0, 5\)"),
        (dict(image_size=64), r"image_size.*64"),
        (dict(label_mode="sparse"), r"label_mode.*'sparse'"),
        (dict(color_mode="cmyk"), r"color_mode.*'cmyk'"),
        (dict(batch_size=0), r"batch_size.*0"),
        (dict(interpolation="fancy"), r"interpolation.*'fancy'"),
        (dict(class_names=["cats", "cows"]), r"class_names.*missing: \['cows'\]"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            image_dataset_from_directory(tmp_path, verbose=False, **kwargs)
