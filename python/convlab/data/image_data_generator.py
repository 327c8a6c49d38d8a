"""ImageDataGenerator: Keras 1/2's augmenting batch iterators (Chollet, DLwP 1st ed., ch. 5).

    train_datagen = ImageDataGenerator(rescale=1./255, rotation_range=40, width_shift_range=0.2,
                                       height_shift_range=0.2, shear_range=0.2, zoom_range=0.2,
                                       horizontal_flip=True)
    train_generator = train_datagen.flow_from_directory(train_dir, target_size=(150, 150),
                                                        batch_size=32, class_mode="binary")
    model.fit(train_generator, steps_per_epoch=100, epochs=30)    # or 1e's fit_generator

`flow(x, y)` draws batches from arrays, `flow_from_directory(dir)` from a folder with one
subfolder per class (classes are the sorted subfolder names; files are read a batch at a
time, when the batch is drawn). Both return an iterator that, like Keras', never ends:
next(it) gives the next batch, epoch after epoch, reshuffled each epoch; len(it) is the
number of batches of one epoch (the last one may be smaller) and it[i] is batch i of the
current epoch, so fit() without steps_per_epoch runs len(it) steps an epoch.

Each image of a batch, in Keras' order:
  1. an affine resampling drawn from the ranges (rotation, shifts, shear, zoom),
  2. flips (each with probability 1/2 when asked),
  3. standardize: preprocessing_function, then rescale (a multiplication), then the
     samplewise centring and scaling.

Index math. Output pixel (column x, row y) reads the input at

    (x_in, y_in) = c + R(theta) T(tx, ty) S(shear) Z(zx, zy) ((x, y) - c)

with c = ((width - 1) / 2, (height - 1) / 2) the image centre and

    R = [[cos t, -sin t], [sin t, cos t]]     theta degrees: positive turns the picture
                                              counter-clockwise (at 90, np.rot90 of it)
    T: x_in = x + tx, y_in = y + ty           tx, ty pixels: positive moves the picture
                                              left (tx) or up (ty)
    S = [[1, -sin s], [0, cos s]]             shear degrees
    Z = [[zx, 0], [0, zy]]                    above 1 reads a larger area: the picture shrinks

These are Keras' apply_transform parameters with Keras' own meaning, so
`apply_transform(x, {"theta": 90})` gives what Keras gives (the tests compare the two);
the resampling is layers.preprocessing.affine_transform, bilinear (interpolation_order=1)
or nearest (0), with the image extended beyond its edges as fill_mode says.

Random draws, per image. rotation_range r: theta uniform in [-r, r] degrees.
width_shift_range w: a float < 1 is a fraction of the width (tx uniform in [-w, w] *
width), a float >= 1 is pixels (uniform in [-w, w]), an int is whole pixels (a draw from
0..w-1 with a random sign, as Keras), a list is a choice among its values with a random
sign. height_shift_range: the same for ty and the height. shear_range s: shear uniform in
[-s, s] degrees. zoom_range z: zx and zy drawn independently from [1 - z, 1 + z] (or from
[lower, upper] given as a pair).

Two places where this differs from Keras 3's (and tf.keras 2's) legacy generator, on
purpose: there width_shift_range draws ty and height_shift_range draws tx, so on a square
image `width_shift_range=0.2` alone moves pictures up and down; here each range moves along
its own axis, as the documentation of both says. And there rotation, shear and zoom turn a
non-square image about a point with the height and width swapped; here about its centre.
Subfolders whose names start with "." (.ipynb_checkpoints) are not classes here.

Randomness. An iterator's seed (or, without one, a seed drawn from convlab's global
generator when it is made, so convlab.utils.set_seed repeats runs) fixes everything: the
order of epoch e is a permutation drawn from (seed, e), and the transforms of batch i of
epoch e are drawn from (seed, e, i), so a batch is the same however it is reached.
"""

import math
import numbers
import os
import warnings

import numpy as np

from .. import utils
from ..layers.preprocessing import FILL_MODES, affine_transform
from .directory import _check_batch_size, _valid_files
from .image import _check_color_mode, _check_interpolation, _check_size, img_to_array, load_img, save_img

__all__ = ["ImageDataGenerator", "Iterator", "NumpyArrayIterator", "DirectoryIterator", "ITERATOR_FORMATS",
           "CLASS_MODES"]

# The files Keras' DirectoryIterator reads.
ITERATOR_FORMATS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff")

CLASS_MODES = ("categorical", "binary", "sparse", "input", None)

# Keras arguments that convlab does not implement: name -> the value that means "off".
_NOT_IMPLEMENTED = {"featurewise_center": False, "featurewise_std_normalization": False, "zca_whitening": False,
                    "brightness_range": None, "channel_shift_range": 0.0}

_TRANSFORM_KEYS = ("theta", "tx", "ty", "shear", "zx", "zy", "flip_horizontal", "flip_vertical")


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


class ImageDataGenerator:
    """Batches of images with random augmentation, from arrays (flow) or a folder
    (flow_from_directory); see the module docstring for the transforms and their order.

    rotation_range: degrees (int or float >= 0). width_shift_range, height_shift_range:
        fraction (< 1) or pixels (>= 1, an int, or a list of choices). shear_range: degrees.
    zoom_range: z for [1 - z, 1 + z], or [lower, upper]. horizontal_flip, vertical_flip: bool.
    fill_mode: "nearest" (Keras' default), "constant" (with cval), "reflect" or "wrap".
    rescale: a number the pixels are multiplied by after the transforms (None or 0: none).
    preprocessing_function: applied to each image (h, w, c) after the transforms, before
        rescale. samplewise_center, samplewise_std_normalization: each image less its mean,
        divided by its standard deviation (+ 1e-6).
    validation_split: fraction in (0, 1) held out for flow(..., subset="validation") and
        flow_from_directory(..., subset="validation").
    interpolation_order: 1 (bilinear, Keras' default) or 0 (nearest).
    featurewise_center, featurewise_std_normalization, zca_whitening, brightness_range and
    channel_shift_range are Keras arguments convlab does not implement: giving them is an error.
    """

    def __init__(self, featurewise_center=False, samplewise_center=False, featurewise_std_normalization=False,
                 samplewise_std_normalization=False, zca_whitening=False, zca_epsilon=1e-6, rotation_range=0,
                 width_shift_range=0.0, height_shift_range=0.0, brightness_range=None, shear_range=0.0,
                 zoom_range=0.0, channel_shift_range=0.0, fill_mode="nearest", cval=0.0, horizontal_flip=False,
                 vertical_flip=False, rescale=None, preprocessing_function=None, data_format=None,
                 validation_split=0.0, interpolation_order=1, dtype=None):
        given = {"featurewise_center": featurewise_center,
                 "featurewise_std_normalization": featurewise_std_normalization,
                 "zca_whitening": zca_whitening, "brightness_range": brightness_range,
                 "channel_shift_range": channel_shift_range}
        for name, off in _NOT_IMPLEMENTED.items():
            if given[name] != off and not (off is False and given[name] is None):
                raise ValueError(f"ImageDataGenerator: {name}={given[name]!r} is not implemented in convlab; "
                                 f"expected {off!r} (supported: rescale, rotation_range, width/height_shift_range, "
                                 f"shear_range, zoom_range, horizontal/vertical_flip, fill_mode, cval, "
                                 f"samplewise_center/std_normalization, preprocessing_function, validation_split)")
        self.rotation_range = self._non_negative("rotation_range", rotation_range)
        self.width_shift_range = self._shift_range("width_shift_range", width_shift_range)
        self.height_shift_range = self._shift_range("height_shift_range", height_shift_range)
        self.shear_range = self._non_negative("shear_range", shear_range)
        self.zoom_range = self._zoom_range(zoom_range)
        if fill_mode not in FILL_MODES:
            raise ValueError(f"ImageDataGenerator: fill_mode must be one of {FILL_MODES}, got {fill_mode!r}")
        self.fill_mode = fill_mode
        if not _is_number(cval):
            raise ValueError(f"ImageDataGenerator: cval must be a number, got {cval!r}")
        self.cval = float(cval)
        self.horizontal_flip, self.vertical_flip = bool(horizontal_flip), bool(vertical_flip)
        if rescale is not None and not _is_number(rescale):
            raise ValueError(f"ImageDataGenerator: rescale must be a number or None, got {rescale!r}")
        self.rescale = rescale
        if preprocessing_function is not None and not callable(preprocessing_function):
            raise ValueError(f"ImageDataGenerator: preprocessing_function must be callable or None, "
                             f"got {preprocessing_function!r}")
        self.preprocessing_function = preprocessing_function
        self.samplewise_center = bool(samplewise_center or samplewise_std_normalization)
        self.samplewise_std_normalization = bool(samplewise_std_normalization)
        self.zca_epsilon = zca_epsilon
        if data_format not in (None, "channels_last"):
            raise ValueError(f"ImageDataGenerator: data_format must be None or 'channels_last' (convlab is NHWC), "
                             f"got {data_format!r}")
        self.data_format = "channels_last"
        if not _is_number(validation_split) or not (validation_split == 0 or 0 < validation_split < 1):
            raise ValueError(f"ImageDataGenerator: validation_split must be 0 or a fraction strictly between 0 and "
                             f"1, got {validation_split!r}")
        self._validation_split = float(validation_split)
        if interpolation_order not in (0, 1) or isinstance(interpolation_order, bool):
            raise ValueError(f"ImageDataGenerator: interpolation_order must be 0 (nearest) or 1 (bilinear), "
                             f"got {interpolation_order!r}")
        self.interpolation_order = int(interpolation_order)
        self.dtype = np.dtype(dtype or utils.floatx()).name

    # ------------------------------------------------------------------ argument checks

    @staticmethod
    def _non_negative(name, value):
        if not _is_number(value) or value < 0:
            raise ValueError(f"ImageDataGenerator: {name} must be a number >= 0 (degrees), got {value!r}")
        return value

    @staticmethod
    def _shift_range(name, value):
        if _is_number(value) and value >= 0:
            return value
        if (isinstance(value, (list, tuple, np.ndarray)) and len(value) > 0
                and all(_is_number(v) for v in value)):
            return list(value)
        raise ValueError(f"ImageDataGenerator: {name} must be a number >= 0 (a fraction of the size below 1, "
                         f"pixels from 1) or a non-empty list of numbers, got {value!r}")

    @staticmethod
    def _zoom_range(value):
        if _is_number(value) and 0 <= value < 1:
            return [1.0 - value, 1.0 + value]
        if (isinstance(value, (list, tuple)) and len(value) == 2 and all(_is_number(v) for v in value)
                and 0 < value[0] <= value[1]):
            return [float(value[0]), float(value[1])]
        raise ValueError(f"ImageDataGenerator: zoom_range must be a number in [0, 1) (for [1 - z, 1 + z]) or a "
                         f"pair [lower, upper] with 0 < lower <= upper, got {value!r}")

    # ------------------------------------------------------------------ the iterators

    def flow(self, x, y=None, batch_size=32, shuffle=True, sample_weight=None, seed=None, save_to_dir=None,
             save_prefix="", save_format="png", ignore_class_split=False, subset=None):
        """An endless NumpyArrayIterator over images x (n, h, w, c) and labels y (or none)."""
        if sample_weight is not None:
            raise ValueError("ImageDataGenerator.flow: sample_weight is not supported (convlab's fit does not "
                             "weight samples); expected None")
        return NumpyArrayIterator(x, y, self, batch_size=batch_size, shuffle=shuffle, seed=seed,
                                  save_to_dir=save_to_dir, save_prefix=save_prefix, save_format=save_format,
                                  ignore_class_split=ignore_class_split, subset=subset)

    def flow_from_directory(self, directory, target_size=(256, 256), color_mode="rgb", classes=None,
                            class_mode="categorical", batch_size=32, shuffle=True, seed=None, save_to_dir=None,
                            save_prefix="", save_format="png", follow_links=False, subset=None,
                            interpolation="nearest", keep_aspect_ratio=False):
        """An endless DirectoryIterator over the images in the class subfolders of `directory`."""
        return DirectoryIterator(directory, self, target_size=target_size, color_mode=color_mode, classes=classes,
                                 class_mode=class_mode, batch_size=batch_size, shuffle=shuffle, seed=seed,
                                 save_to_dir=save_to_dir, save_prefix=save_prefix, save_format=save_format,
                                 follow_links=follow_links, subset=subset, interpolation=interpolation,
                                 keep_aspect_ratio=keep_aspect_ratio)

    # ------------------------------------------------------------------ transforms

    def _draw_shift(self, shift_range, size, rng, count):
        if isinstance(shift_range, list):
            values = rng.choice(np.asarray(shift_range, dtype=np.float64), count)
            values = values * rng.choice([-1.0, 1.0], count)
            return values * size if max(shift_range) < 1 else values
        if _is_int(shift_range) and shift_range >= 1:
            return rng.integers(0, int(shift_range), count) * rng.choice([-1.0, 1.0], count)
        values = rng.uniform(-shift_range, shift_range, count)
        return values * size if shift_range < 1 else values

    def get_random_transforms(self, image_shape, count, rng):
        """A dict of arrays, one value per image for each of Keras' transform parameters
        ("theta", "tx", "ty", "shear", "zx", "zy", "flip_horizontal", "flip_vertical")."""
        height, width = image_shape[0], image_shape[1]
        zeros = np.zeros(count)
        params = {
            "theta": rng.uniform(-self.rotation_range, self.rotation_range, count) if self.rotation_range else zeros,
            "tx": self._draw_shift(self.width_shift_range, width, rng, count) if self.width_shift_range else zeros,
            "ty": self._draw_shift(self.height_shift_range, height, rng, count) if self.height_shift_range else zeros,
            "shear": rng.uniform(-self.shear_range, self.shear_range, count) if self.shear_range else zeros,
        }
        if self.zoom_range == [1.0, 1.0]:
            params["zx"], params["zy"] = np.ones(count), np.ones(count)
        else:
            params["zx"] = rng.uniform(self.zoom_range[0], self.zoom_range[1], count)
            params["zy"] = rng.uniform(self.zoom_range[0], self.zoom_range[1], count)
        params["flip_horizontal"] = (rng.random(count) < 0.5) & self.horizontal_flip
        params["flip_vertical"] = (rng.random(count) < 0.5) & self.vertical_flip
        return params

    def get_random_transform(self, img_shape, seed=None):
        """Keras' get_random_transform: the parameters for one image (h, w, c), as a dict of numbers."""
        rng = utils.generator() if seed is None else np.random.default_rng(seed)
        params = self.get_random_transforms(img_shape, 1, rng)
        return {key: (bool(value[0]) if key.startswith("flip") else float(value[0])) for key, value in params.items()}

    @staticmethod
    def inverse_maps(params, height, width):
        """(count, 2, 3): where each output pixel reads its input, from Keras' parameters (the
        matrix product of the module docstring, about the image centre)."""
        theta, shear = np.deg2rad(params["theta"]), np.deg2rad(params["shear"])
        count = len(theta)
        ones, zeros = np.ones(count), np.zeros(count)

        def matrices(rows):
            return np.stack([np.stack(row, axis=-1) for row in rows], axis=1)

        rotation = matrices([[np.cos(theta), -np.sin(theta), zeros], [np.sin(theta), np.cos(theta), zeros],
                             [zeros, zeros, ones]])
        shift = matrices([[ones, zeros, params["tx"]], [zeros, ones, params["ty"]], [zeros, zeros, ones]])
        shearing = matrices([[ones, -np.sin(shear), zeros], [zeros, np.cos(shear), zeros], [zeros, zeros, ones]])
        zoom = matrices([[params["zx"], zeros, zeros], [zeros, params["zy"], zeros], [zeros, zeros, ones]])
        cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
        to_centre = np.array([[1.0, 0.0, cx], [0.0, 1.0, cy], [0.0, 0.0, 1.0]])
        from_centre = np.array([[1.0, 0.0, -cx], [0.0, 1.0, -cy], [0.0, 0.0, 1.0]])
        full = to_centre @ rotation @ shift @ shearing @ zoom @ from_centre
        return full[:, :2, :]

    def apply_transforms(self, images, params):
        """The affine resampling and the flips of `params` applied to a batch (n, h, w, c)."""
        images = np.asarray(images)
        if images.ndim != 4:
            raise ValueError(f"ImageDataGenerator: images must be a batch (n, height, width, channels), "
                             f"got shape {images.shape}")
        count, height, width = images.shape[:3]
        params = {key: np.broadcast_to(np.asarray(params.get(key, default), dtype=np.float64), (count,))
                  for key, default in (("theta", 0), ("tx", 0), ("ty", 0), ("shear", 0), ("zx", 1), ("zy", 1),
                                       ("flip_horizontal", 0), ("flip_vertical", 0))}
        identity = not (params["theta"].any() or params["tx"].any() or params["ty"].any()
                        or params["shear"].any() or (params["zx"] != 1).any() or (params["zy"] != 1).any())
        if not identity:
            images = affine_transform(images, self.inverse_maps(params, height, width),
                                      "bilinear" if self.interpolation_order == 1 else "nearest",
                                      self.fill_mode, self.cval)
        for key, axis in (("flip_horizontal", 2), ("flip_vertical", 1)):
            flip = params[key].astype(bool)
            if flip.any():
                images = np.where(flip[:, None, None, None], np.flip(images, axis=axis), images)
        return images

    def apply_transform(self, x, transform_parameters):
        """Keras' apply_transform: one image (h, w, c) transformed by the given parameters."""
        x = np.asarray(x)
        if x.ndim != 3:
            raise ValueError(f"ImageDataGenerator.apply_transform: x must be one image (height, width, channels), "
                             f"got shape {x.shape}")
        unknown = sorted(set(transform_parameters) - set(_TRANSFORM_KEYS)
                         - {"channel_shift_intensity", "brightness"})
        if unknown:
            raise ValueError(f"ImageDataGenerator.apply_transform: unknown transform parameters {unknown}; "
                             f"expected keys among {list(_TRANSFORM_KEYS)}")
        for key in ("channel_shift_intensity", "brightness"):
            if transform_parameters.get(key) is not None:
                raise ValueError(f"ImageDataGenerator.apply_transform: {key} is not implemented in convlab; "
                                 f"expected None")
        params = {key: [value] for key, value in transform_parameters.items() if key in _TRANSFORM_KEYS}
        return self.apply_transforms(x[None], params)[0]

    def standardize(self, x):
        """preprocessing_function, rescale, samplewise centring/scaling, on one image or a
        batch (each image on its own). Returns a new array."""
        x = np.array(x, dtype=self.dtype, copy=True)
        single = x.ndim == 3
        images = x[None] if single else x
        if self.preprocessing_function is not None:
            images = np.stack([np.asarray(self.preprocessing_function(image), dtype=self.dtype) for image in images])
        if self.rescale:
            images = images * np.asarray(self.rescale, dtype=self.dtype)
        if self.samplewise_center:
            images = images - images.mean(axis=(1, 2, 3), keepdims=True)
        if self.samplewise_std_normalization:
            images = images / (images.std(axis=(1, 2, 3), keepdims=True) + 1e-6)
        return images[0] if single else images

    def random_transform(self, x, seed=None):
        """One image (h, w, c) with a random transform (Keras' random_transform)."""
        return self.apply_transform(x, self.get_random_transform(np.shape(x), seed))

    def augment_batch(self, images, rng):
        """A batch (n, h, w, c) drawn through the whole pipeline with the generator `rng`."""
        params = self.get_random_transforms(images.shape[1:], len(images), rng)
        return self.standardize(self.apply_transforms(images, params))


# --------------------------------------------------------------------------- iterators


class Iterator:
    """Keras' image iterator: endless batches of `batch_size` drawn from n samples.

    next(it) is the next batch (after the last batch of an epoch, the first of the next one,
    in a new order when shuffle=True); len(it) is the number of batches of an epoch; it[i]
    is batch i of the current epoch; iter(it) is it, so `for x, y in it:` never ends by
    itself (break out of it, as the book does). Subclasses load batches in `_load(indices)`.
    """

    def __init__(self, n, batch_size, shuffle, seed, where):
        self.n = int(n)
        self.batch_size = _check_batch_size(batch_size)
        self.shuffle = bool(shuffle)
        if seed is not None and (not _is_int(seed) or seed < 0):
            raise ValueError(f"{where}: seed must be a non-negative int or None, got {seed!r}")
        self.seed = int(seed) if seed is not None else utils.derived_seed()
        self.epoch = 0
        self.batch_index = 0
        self.total_batches_seen = 0

    def __len__(self):
        return math.ceil(self.n / self.batch_size)

    @property
    def index_array(self):
        """The order of the samples in the current epoch."""
        if not self.shuffle:
            return np.arange(self.n)
        return np.random.default_rng([self.seed, 0, self.epoch]).permutation(self.n)

    def __getitem__(self, index):
        if not _is_int(index) or not 0 <= index < len(self):
            raise IndexError(f"batch index must be an int in [0, {len(self)}) (batches per epoch), got {index!r}")
        indices = self.index_array[index * self.batch_size:(index + 1) * self.batch_size]
        self.total_batches_seen += 1
        return self._load(indices, np.random.default_rng([self.seed, 1, self.epoch, int(index)]))

    def __iter__(self):
        return self

    def __next__(self):
        batch = self[self.batch_index]
        self.batch_index += 1
        if self.batch_index == len(self):
            self.on_epoch_end()
        return batch

    next = __next__  # Keras 1's spelling: train_generator.next()

    def on_epoch_end(self):
        """Start the next epoch (a new order when shuffling)."""
        self.epoch += 1
        self.batch_index = 0

    def reset(self):
        """Start over at the first batch of a new epoch."""
        if self.batch_index:
            self.on_epoch_end()

    def _load(self, indices, rng):
        raise NotImplementedError

    def _save(self, images, indices, rng):
        if self.save_to_dir:
            for image, index in zip(images, indices):
                name = f"{self.save_prefix}_{int(index)}_{int(rng.integers(10**7))}.{self.save_format}"
                save_img(os.path.join(self.save_to_dir, name), image, scale=True)


class NumpyArrayIterator(Iterator):
    """Batches (x, y), or x alone without y, from arrays; made by ImageDataGenerator.flow."""

    def __init__(self, x, y, image_data_generator, batch_size=32, shuffle=False, seed=None, save_to_dir=None,
                 save_prefix="", save_format="png", ignore_class_split=False, subset=None):
        where = "ImageDataGenerator.flow"
        x = np.asarray(x)
        if x.ndim != 4:
            raise ValueError(f"{where}: x must be images (n, height, width, channels), got an array of shape "
                             f"{x.shape}")
        if y is not None:
            y = np.asarray(y)
            if len(y) != len(x):
                raise ValueError(f"{where}: x and y must have one entry per image, got x of shape {x.shape} and "
                                 f"y of shape {y.shape}")
        if subset is not None:
            x, y = _split_arrays(where, x, y, image_data_generator._validation_split, subset, ignore_class_split)
        if len(x) == 0:
            raise ValueError(f"{where}: x holds no images (shape {x.shape}); expected at least one")
        if x.shape[3] not in (1, 3, 4):
            warnings.warn(f"{where}: x has {x.shape[3]} channels (shape {x.shape}); images have 1, 3 or 4 "
                          f"channels on the last axis (channels_last)", stacklevel=3)
        self.x = x.astype(image_data_generator.dtype, copy=False)
        self.y = y
        self.image_data_generator = image_data_generator
        self.save_to_dir, self.save_prefix, self.save_format = save_to_dir, save_prefix, save_format
        super().__init__(len(x), batch_size, shuffle, seed, where)

    def _load(self, indices, rng):
        images = self.image_data_generator.augment_batch(self.x[indices], rng)
        self._save(images, indices, rng)
        return images if self.y is None else (images, self.y[indices])


def _split_arrays(where, x, y, validation_split, subset, ignore_class_split):
    """Keras' split of arrays: the first int(n * validation_split) samples are the validation ones."""
    if subset not in ("training", "validation"):
        raise ValueError(f"{where}: subset must be 'training', 'validation' or None, got {subset!r}")
    if not validation_split:
        raise ValueError(f"{where}: subset={subset!r} needs ImageDataGenerator(validation_split=...) in (0, 1), "
                         f"got validation_split=0")
    cut = int(len(x) * validation_split)
    if y is not None and not ignore_class_split and not np.array_equal(np.unique(y[:cut]), np.unique(y[cut:])):
        raise ValueError(f"{where}: the validation part (first {cut} samples) has the classes "
                         f"{np.unique(y[:cut]).tolist()} and the training part {np.unique(y[cut:]).tolist()}; "
                         f"expected the same classes in both: shuffle x and y first, or pass ignore_class_split=True")
    part = slice(None, cut) if subset == "validation" else slice(cut, None)
    return x[part], None if y is None else y[part]


class DirectoryIterator(Iterator):
    """Batches read from image files, a batch at a time; made by flow_from_directory.

    Attributes, as Keras': class_indices ({class name: index}), classes (int32 label of each
    file), filenames (paths relative to `directory`), filepaths, samples (= n), num_classes,
    image_shape, labels.
    """

    def __init__(self, directory, image_data_generator, target_size=(256, 256), color_mode="rgb", classes=None,
                 class_mode="categorical", batch_size=32, shuffle=True, seed=None, save_to_dir=None,
                 save_prefix="", save_format="png", follow_links=False, subset=None, interpolation="nearest",
                 keep_aspect_ratio=False):
        where = "ImageDataGenerator.flow_from_directory"
        try:
            directory = os.fspath(directory)
        except TypeError:
            raise TypeError(f"{where}: directory must be a folder path, got {type(directory).__name__}") from None
        if not os.path.isdir(directory):
            raise ValueError(f"{where}: directory {directory!r} does not exist or is not a folder")
        if class_mode not in CLASS_MODES:
            raise ValueError(f"{where}: class_mode must be one of {list(CLASS_MODES)}, got {class_mode!r}")
        self.target_size = _check_size(target_size, "target_size")
        self.color_mode = _check_color_mode(color_mode)
        _check_interpolation(interpolation)
        split = None
        if subset is not None:
            if subset not in ("training", "validation"):
                raise ValueError(f"{where}: subset must be 'training', 'validation' or None, got {subset!r}")
            validation_split = image_data_generator._validation_split
            if not validation_split:
                raise ValueError(f"{where}: subset={subset!r} needs ImageDataGenerator(validation_split=...) in "
                                 f"(0, 1), got validation_split=0")
            split = (0.0, validation_split) if subset == "validation" else (validation_split, 1.0)

        if classes is None:
            classes = sorted(name for name in os.listdir(directory)
                             if os.path.isdir(os.path.join(directory, name)) and not name.startswith("."))
        else:
            classes = list(classes)
            missing = [name for name in classes if not os.path.isdir(os.path.join(directory, name))]
            if missing:
                raise ValueError(f"{where}: classes {classes!r} name folders that are not in {directory!r} "
                                 f"(missing: {missing})")
        if class_mode == "binary" and len(classes) != 2:
            raise ValueError(f"{where}: class_mode='binary' needs exactly 2 class folders, found {len(classes)} "
                             f"in {directory!r}: {classes}")
        self.directory = directory
        self.class_indices = {name: index for index, name in enumerate(classes)}
        self.num_classes = len(classes)
        self.filenames, labels = [], []
        for name in classes:
            files = _valid_files(os.path.join(directory, name), follow_links, ITERATOR_FORMATS)
            if split is not None:  # Keras splits each class folder: its first files are the validation ones
                files = files[int(split[0] * len(files)):int(split[1] * len(files))]
            self.filenames += [os.path.relpath(path, directory) for path in files]
            labels += [self.class_indices[name]] * len(files)
        self.classes = np.asarray(labels, dtype=np.int32)
        self.samples = len(self.filenames)
        print(f"Found {self.samples} images belonging to {self.num_classes} classes.")
        if not self.samples:
            raise ValueError(f"{where}: found no image files in the class folders {classes} of {directory!r}; "
                             f"expected files ending in one of {ITERATOR_FORMATS}")
        self.filepaths = [os.path.join(directory, name) for name in self.filenames]
        self.class_mode = class_mode
        self.image_data_generator = image_data_generator
        self.interpolation, self.keep_aspect_ratio = interpolation, bool(keep_aspect_ratio)
        channels = {"grayscale": 1, "rgb": 3, "rgba": 4}[self.color_mode]
        self.image_shape = self.target_size + (channels,)
        self.save_to_dir, self.save_prefix, self.save_format = save_to_dir, save_prefix, save_format
        self.skipped_files = []
        super().__init__(self.samples, batch_size, shuffle, seed, where)

    @property
    def labels(self):
        return self.classes

    def _load(self, indices, rng):
        dtype = self.image_data_generator.dtype
        images = np.empty((len(indices),) + self.image_shape, dtype=dtype)
        kept = []
        for index in indices:
            path = self.filepaths[index]
            try:
                img = load_img(path, self.color_mode, self.target_size, self.interpolation, self.keep_aspect_ratio)
            except Exception as error:  # a bad file is reported and left out, never fatal
                if path not in self.skipped_files:
                    self.skipped_files.append(path)
                    warnings.warn(f"flow_from_directory: skipping {path!r}, which cannot be read as an image "
                                  f"({type(error).__name__}: {error})", stacklevel=4)
                continue
            images[len(kept)] = img_to_array(img, dtype=dtype)
            kept.append(index)
        if not kept:
            raise ValueError(f"flow_from_directory: none of the files of this batch can be read as an image: "
                             f"{[self.filepaths[i] for i in indices]}")
        kept = np.asarray(kept)
        images = self.image_data_generator.augment_batch(images[:len(kept)], rng)
        self._save(images, kept, rng)
        if self.class_mode is None:
            return images
        if self.class_mode == "input":
            return images, images.copy()
        labels = self.classes[kept]
        if self.class_mode == "categorical":
            return images, np.eye(self.num_classes, dtype=dtype)[labels]
        return images, labels.astype(dtype)  # "binary", "sparse": (batch,) floats, as Keras
