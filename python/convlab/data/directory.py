"""A folder of images as a lazy, batched dataset (Keras' image_dataset_from_directory).

    main_directory/
        cats/  cat.0.jpg  cat.1.jpg ...
        dogs/  dog.0.jpg  dog.1.jpg ...

    train = image_dataset_from_directory("main_directory", image_size=(180, 180),
                                         validation_split=0.2, subset="training", seed=1337)
    for images, labels in train:      # images (32, 180, 180, 3) float32 0..255, labels (32,) int32
        ...

What it does, in Keras' order:

1. Index. With labels="inferred" the sorted subfolders of `directory` are the classes
   (class i = i-th name), and each class folder is walked recursively for files ending in
   .bmp .gif .jpeg .jpg .png (any case), sorted. With labels=None or an explicit list of
   labels, `directory` itself is walked. Nothing is decoded; only names are listed.
2. Shuffle once. With shuffle=True the file list is permuted once with
   numpy.random.RandomState(seed).shuffle, as Keras does, so the same seed gives Keras'
   own file order.
3. Split. validation_split=v keeps int(v * n) files from the end of the (shuffled) list
   for validation; training gets the n - int(v * n) files before them.
4. Batches, lazily. Each iteration over the dataset (one epoch) decodes the files of one
   batch at a time with pillow: only a batch of pixels is in memory at once. With
   shuffle=True every epoch visits the files in a new order (a full permutation drawn from
   the seed and the epoch number; Keras shuffles within a buffer of 8 batches instead).

Iterating yields (images, labels) of numpy arrays, or images alone when label_mode=None:

    images  float32 (batch, height, width, channels), values 0..255; channels 1, 3 or 4
    labels  "int": int32 (batch,);  "categorical": float32 one-hot (batch, num_classes);
            "binary": float32 (batch, 1), 0.0 for class_names[0] and 1.0 for class_names[1]

Images are resized with pillow's filters (Keras resizes with TensorFlow's, without
antialiasing), so pixel values differ slightly from Keras' after a resize; files already
at image_size are read unchanged.

A file pillow cannot read (corrupt, truncated, not an image) is never fatal: it is
reported with warnings.warn, naming the path and the reason, left out of the batch being
built (that batch comes out smaller) and of every later epoch (`skipped_files` lists them).
"""

import math
import os
import warnings

import numpy as np

from .. import utils
from .image import COLOR_MODES, _check_color_mode, _check_size, _convert_color, _open_decoded, _resize, img_to_array
from PIL import Image

__all__ = ["image_dataset_from_directory", "ImageDataset", "ALLOWED_FORMATS"]

ALLOWED_FORMATS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")

LABEL_MODES = ("int", "categorical", "binary")

# Keras' names (TensorFlow's resize methods and pillow's) -> pillow filter.
_RESIZE_METHODS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "area": Image.Resampling.BOX,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
    "lanczos": Image.Resampling.LANCZOS,
    "lanczos3": Image.Resampling.LANCZOS,
}


class ImageDataset:
    """Batches of images decoded from files when they are needed (see the module docstring).

    Attributes:
        class_names   list of str: class i is class_names[i]
        file_paths    list of str: the files of this dataset, in its order after the one-time
                      shuffle and the split, less any file found unreadable
        batch_size, image_size (height, width), color_mode, label_mode, num_channels
        skipped_files list of str: files found unreadable so far

    len(ds) is the number of batches of an epoch; iter(ds) starts a new epoch.
    """

    def __init__(self, file_paths, labels, label_mode, class_names, color_mode="rgb", batch_size=32,
                 image_size=(256, 256), shuffle=False, seed=None, interpolation="bilinear",
                 crop_to_aspect_ratio=False, *, _skipped=None, _max_batches=None):
        if labels is not None and len(labels) != len(file_paths):
            raise ValueError(f"labels must have one entry per file: got {len(labels)} labels "
                             f"for {len(file_paths)} files")
        if label_mode is not None and label_mode not in LABEL_MODES:
            raise ValueError(f"label_mode must be one of {list(LABEL_MODES)} or None, got {label_mode!r}")
        if label_mode is not None and labels is None:
            raise ValueError(f"label_mode={label_mode!r} needs labels, got labels=None")
        self._paths = [os.fspath(p) for p in file_paths]
        self._labels = None if labels is None else np.asarray(labels, dtype=np.int32)
        self.label_mode = label_mode
        self.class_names = list(class_names) if class_names is not None else None
        self.color_mode = _check_color_mode(color_mode)
        self.num_channels = COLOR_MODES[color_mode]
        self.batch_size = _check_batch_size(batch_size)
        self.image_size = _check_size(image_size, "image_size")
        self.shuffle = bool(shuffle)
        self.seed = seed
        self.interpolation = interpolation
        self._resample = _resize_filter(interpolation)
        self.crop_to_aspect_ratio = bool(crop_to_aspect_ratio)
        # Shared with the datasets made by take(): a file found unreadable is left out of all.
        self._skipped = set() if _skipped is None else _skipped
        self._max_batches = _max_batches
        self._epoch = 0

    # ------------------------------------------------------------------ protocol

    def _live_indices(self):
        return [i for i, path in enumerate(self._paths) if path not in self._skipped]

    @property
    def file_paths(self):
        return [self._paths[i] for i in self._live_indices()]

    @property
    def skipped_files(self):
        return [path for path in self._paths if path in self._skipped]

    def __len__(self):
        batches = math.ceil(len(self._live_indices()) / self.batch_size)
        return batches if self._max_batches is None else min(batches, self._max_batches)

    def __iter__(self):
        order = np.asarray(self._live_indices(), dtype=np.int64)
        if self.shuffle:
            # The order of epoch k depends only on (seed, k): runs repeat, epochs differ.
            order = np.random.default_rng([self.seed, self._epoch]).permutation(order)
        self._epoch += 1
        return self._batches(order)

    def _batches(self, order):
        produced = 0
        for start in range(0, len(order), self.batch_size):
            if self._max_batches is not None and produced >= self._max_batches:
                return
            batch = self._load_batch(order[start:start + self.batch_size])
            if batch is None:  # every file of this batch was unreadable
                continue
            produced += 1
            yield batch

    def _load_image(self, path):
        img = _convert_color(_open_decoded(path), self.color_mode)
        img = _resize(img, self.image_size, self._resample, self.crop_to_aspect_ratio)
        return img_to_array(img, dtype="float32")

    def _load_batch(self, indices):
        height, width = self.image_size
        images = np.empty((len(indices), height, width, self.num_channels), dtype=np.float32)
        kept = []
        for index in indices:
            path = self._paths[index]
            try:
                images[len(kept)] = self._load_image(path)
            except Exception as error:  # a bad file is reported and skipped, never fatal
                self._skipped.add(path)
                warnings.warn(f"image_dataset_from_directory: skipping {path!r}, which cannot be read "
                              f"as an image ({type(error).__name__}: {error})", stacklevel=3)
                continue
            kept.append(index)
        if not kept:
            return None
        images = images[:len(kept)]
        if self.label_mode is None:
            return images
        labels = self._labels[np.asarray(kept)]
        if self.label_mode == "int":
            return images, labels
        if self.label_mode == "binary":
            return images, labels.astype(np.float32).reshape(-1, 1)
        return images, np.eye(len(self.class_names), dtype=np.float32)[labels]

    # ------------------------------------------------------------------ helpers

    def take(self, count):
        """A dataset of the first `count` batches of each epoch of this one (tf.data's take)."""
        if not isinstance(count, (int, np.integer)) or isinstance(count, bool) or count < 0:
            raise ValueError(f"count must be a non-negative int, got {count!r}")
        limit = int(count) if self._max_batches is None else min(int(count), self._max_batches)
        return ImageDataset(self._paths, self._labels, self.label_mode, self.class_names, self.color_mode,
                            self.batch_size, self.image_size, self.shuffle, self.seed, self.interpolation,
                            self.crop_to_aspect_ratio, _skipped=self._skipped, _max_batches=limit)

    def __repr__(self):
        return (f"ImageDataset({len(self._paths)} files, {len(self)} batches of {self.batch_size}, "
                f"image_size={self.image_size}, color_mode={self.color_mode!r}, label_mode={self.label_mode!r}, "
                f"class_names={self.class_names!r})")


def _check_batch_size(batch_size):
    if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    return int(batch_size)


def _resize_filter(interpolation):
    if interpolation not in _RESIZE_METHODS:
        raise ValueError(f"interpolation must be one of {sorted(_RESIZE_METHODS)}, got {interpolation!r}")
    return _RESIZE_METHODS[interpolation]


def _valid_files(directory, follow_links, formats=ALLOWED_FORMATS):
    """Image files under `directory`, walked recursively, folders and names sorted (as Keras)."""
    found = []
    for root, _, files in sorted(os.walk(directory, followlinks=follow_links), key=lambda entry: entry[0]):
        for name in sorted(files):
            if name.lower().endswith(formats):
                found.append(os.path.join(root, name))
    return found


def _index_directory(directory, labels, class_names, follow_links):
    """(file_paths, labels or None, class_names), in Keras' order, before any shuffle."""
    if isinstance(labels, str):  # "inferred"
        subdirs = sorted(name for name in os.listdir(directory)
                         if os.path.isdir(os.path.join(directory, name)) and not name.startswith("."))
        if not subdirs:
            raise ValueError(f"directory {directory!r} has no class subfolders; with labels='inferred' "
                             f"each class must be a subfolder holding its images (or pass labels=None)")
        if class_names is not None:
            missing = [name for name in class_names if name not in subdirs]
            if missing:
                raise ValueError(f"class_names {list(class_names)!r} name folders that are not in {directory!r} "
                                 f"(missing: {missing}); expected a subset of its subfolders {subdirs}")
            subdirs = list(class_names)  # the order given is the class order
        paths, file_labels = [], []
        for index, name in enumerate(subdirs):
            files = _valid_files(os.path.join(directory, name), follow_links)
            paths.extend(files)
            file_labels.extend([index] * len(files))
        return paths, np.asarray(file_labels, dtype=np.int32), list(subdirs)

    if class_names is not None:
        raise ValueError(f"class_names can only be given with labels='inferred', got labels={_short(labels)}: "
                         f"with explicit labels the class names are the sorted labels, without labels there are none")
    paths = _valid_files(directory, follow_links)
    if labels is None:
        return paths, None, None
    if len(labels) != len(paths):
        raise ValueError(f"labels must have one label per image file found in {directory!r}: got {len(labels)} "
                         f"labels for {len(paths)} files")
    values = np.asarray(labels)
    if values.size and (not np.issubdtype(values.dtype, np.integer) or values.min() < 0):
        raise ValueError(f"labels must be non-negative ints (sorted like the image file paths), got {_short(labels)}")
    names = [str(value) for value in sorted(set(values.tolist()))]
    return paths, values.astype(np.int32), names


def _short(value, limit=60):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "...]"


def _split(paths, labels, validation_split, subset):
    """Keras' split: the last int(split * n) files are the validation files."""
    count = len(paths)
    num_validation = int(validation_split * count)
    cut = count - num_validation
    if subset == "training":
        return paths[:cut], None if labels is None else labels[:cut]
    return paths[cut:], None if labels is None else labels[cut:]


def image_dataset_from_directory(directory, labels="inferred", label_mode="int", class_names=None,
                                 color_mode="rgb", batch_size=32, image_size=(256, 256), shuffle=True,
                                 seed=None, validation_split=None, subset=None, interpolation="bilinear",
                                 follow_links=False, crop_to_aspect_ratio=False, verbose=True):
    """A lazy ImageDataset of the images under `directory` (see the module docstring).

    directory: folder of class subfolders (labels="inferred"), or of images.
    labels: "inferred" (from the subfolders), None (no labels), or a list of int labels, one
        per image file in the order of their sorted paths.
    label_mode: "int", "categorical", "binary" (exactly 2 classes) or None (images only).
    class_names: with labels="inferred", the subfolders to use, in class order (default:
        all, sorted).
    color_mode: "rgb", "grayscale" or "rgba" (3, 1 or 4 channels).
    batch_size: images per batch.
    image_size: (height, width) every image is resized to.
    shuffle, seed: shuffle the files once (before the split) and every epoch; a seed is
        required with validation_split and shuffle, so that subsets are disjoint.
    validation_split: fraction in (0, 1) kept for validation; needs `subset`.
    subset: "training", "validation" or "both" (returns (training, validation); the
        validation part is then not reshuffled each epoch).
    interpolation: resize filter: "bilinear", "nearest", "bicubic", "area" (box),
        "lanczos3" (lanczos), "hamming", "box", "lanczos".
    follow_links: walk into symbolic links to folders.
    crop_to_aspect_ratio: crop the largest centered window of image_size's aspect ratio
        before resizing, instead of stretching.
    verbose: print how many files were found and used, as Keras does.
    """
    try:
        directory = os.fspath(directory)
    except TypeError:
        raise TypeError(f"directory must be a folder path, got {type(directory).__name__}") from None
    if not os.path.isdir(directory):
        raise ValueError(f"directory {directory!r} does not exist or is not a folder")
    if not (labels is None or isinstance(labels, (list, tuple, np.ndarray))
            or (isinstance(labels, str) and labels == "inferred")):
        raise ValueError(f"labels must be 'inferred', None or a list/tuple of int labels, got {_short(labels)}")
    if label_mode is not None and label_mode not in LABEL_MODES:
        raise ValueError(f"label_mode must be one of {list(LABEL_MODES)} or None, got {label_mode!r}")
    if labels is None:
        label_mode = None
    _check_color_mode(color_mode)
    _check_batch_size(batch_size)
    image_size = _check_size(image_size, "image_size")
    _resize_filter(interpolation)
    if validation_split is not None:
        if (isinstance(validation_split, bool) or not isinstance(validation_split, (int, float, np.floating))
                or not 0 < validation_split < 1):
            raise ValueError(f"validation_split must be a float strictly between 0 and 1, got {validation_split!r}")
    if subset is not None and subset not in ("training", "validation", "both"):
        raise ValueError(f"subset must be 'training', 'validation', 'both' or None, got {subset!r}")
    if (validation_split is None) != (subset is None):
        raise ValueError(f"validation_split and subset go together: got validation_split={validation_split!r} "
                         f"and subset={subset!r}; give both (e.g. 0.2 and 'training') or neither")
    if validation_split is not None and shuffle and seed is None:
        raise ValueError("seed must be given with validation_split and shuffle=True, so that the training and "
                         "validation subsets are drawn from the same shuffle and do not overlap; got seed=None")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise ValueError(f"seed must be a non-negative int or None, got {seed!r}")

    paths, file_labels, names = _index_directory(directory, labels, class_names, follow_links)
    if label_mode == "binary" and len(names) != 2:
        raise ValueError(f"label_mode='binary' needs exactly 2 classes, got {len(names)}: class_names={names}")
    if label_mode == "categorical" and file_labels.size and file_labels.max() >= len(names):
        raise ValueError(f"label_mode='categorical' needs labels in 0..{len(names) - 1} (one per class), "
                         f"got a label {int(file_labels.max())}")
    if verbose:
        if names is None:
            print(f"Found {len(paths)} files.")
        else:
            print(f"Found {len(paths)} files belonging to {len(names)} classes.")
    if not paths:
        raise ValueError(f"no image files found in directory {directory!r}; "
                         f"expected files ending in one of {ALLOWED_FORMATS}")

    if shuffle:
        if seed is None:
            seed = int(utils.generator().integers(1_000_000))
        order = list(range(len(paths)))
        np.random.RandomState(seed).shuffle(order)  # Keras' shuffle: same seed, same file order
        paths = [paths[i] for i in order]
        if file_labels is not None:
            file_labels = file_labels[order]

    def make(subset_name, subset_shuffle):
        part_paths, part_labels = paths, file_labels
        if subset_name is not None:
            part_paths, part_labels = _split(paths, file_labels, validation_split, subset_name)
            if verbose:
                print(f"Using {len(part_paths)} files for {subset_name}.")
            if not part_paths:
                raise ValueError(f"validation_split={validation_split} of {len(paths)} files leaves no files "
                                 f"for {subset_name}")
        return ImageDataset(part_paths, part_labels if label_mode is not None else None, label_mode, names,
                            color_mode, batch_size, image_size, subset_shuffle, seed, interpolation,
                            crop_to_aspect_ratio)

    if subset == "both":
        return make("training", shuffle), make("validation", False)
    return make(subset, shuffle)
