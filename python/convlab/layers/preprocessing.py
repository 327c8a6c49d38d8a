"""Data augmentation: RandomFlip, RandomRotation, RandomZoom and RandomTranslation.

Keras' augmentation layers, put at the front of a model (the book's stack is
`Sequential([RandomFlip("horizontal"), RandomRotation(0.1), RandomZoom(0.2)])`). They act
only when called with training=True (as `fit` calls them); otherwise they return their
input unchanged. Each image of a batch gets its own random draw, from a numpy Generator
the layer owns: seeded by `seed`, or, without one, from convlab's global generator when
the layer is created, so `convlab.utils.set_seed` makes runs repeat.

Inputs: a batch (batch, height, width, channels) or one image (height, width, channels).
In training the output is a new Tensor that records no gradient: augmentation transforms
the data, it is not part of what is learned, so nothing flows back into its input.

Index math of the geometric layers. Each output pixel (column x, row y) reads the input
at the point an inverse affine map gives,

    x_in = a00 * x + a01 * y + a02
    y_in = a10 * x + a11 * y + a12

built about the image centre (cx, cy) = ((width - 1) / 2, (height - 1) / 2):

    rotation by t radians   x_in = cx + cos t (x - cx) - sin t (y - cy)
                            y_in = cy + sin t (x - cx) + cos t (y - cy)
    zoom (zx, zy)           x_in = cx + zx (x - cx),   y_in = cy + zy (y - cy)
    shift (dx, dy) pixels   x_in = x - dx,             y_in = y - dy

With rows counted downwards, a positive angle turns the picture counter-clockwise (at 90
degrees the output is np.rot90 of the input); a zoom above 1 reads a larger area, so the
picture shrinks (zooms out); a positive shift moves the picture right and down.

The input is read as if it went on beyond its edges, as `fill_mode` says, and the
interpolation reads that extended picture too:

    "reflect"    d c b a | a b c d | d c b a   mirrored about the edge of the last pixel
    "wrap"       a b c d | a b c d | a b c d   the opposite edge comes round
    "constant"   k k k k | a b c d | k k k k   k = fill_value
    "nearest"    a a a a | a b c d | d d d d   the edge pixel repeated

"nearest" interpolation reads the pixel at (floor(x_in + 0.5), floor(y_in + 0.5));
"bilinear" blends the four pixels around (x_in, y_in) by their distances.
"""

import math
import numbers

import numpy as np

from .. import utils
from .._backend import array_module
from ..autograd import Tensor
from .base import Layer

__all__ = ["RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation", "affine_transform"]

FILL_MODES = ("reflect", "wrap", "constant", "nearest")
INTERPOLATIONS = ("bilinear", "nearest")
FLIP_MODES = ("horizontal_and_vertical", "horizontal", "vertical")


# --------------------------------------------------------------------------- sampling


def affine_transform(images, inverse_maps, interpolation="bilinear", fill_mode="reflect", fill_value=0.0):
    """Resample a batch of images through one inverse affine map per image.

    images: (batch, height, width, channels), numpy or CuPy. inverse_maps: (batch, 2, 3);
    output pixel (x, y) reads the input at inverse_maps[i] @ (x, y, 1) (x the column, y
    the row). Returns an array of the images' shape, dtype and array module.
    """
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"affine_transform: interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    if fill_mode not in FILL_MODES:
        raise ValueError(f"affine_transform: fill_mode must be one of {FILL_MODES}, got {fill_mode!r}")
    if images.ndim != 4:
        raise ValueError(
            f"affine_transform: images must be (batch, height, width, channels), got shape {tuple(images.shape)}"
        )
    xp = array_module(images)
    batch, height, width, channels = images.shape
    maps = xp.asarray(inverse_maps, dtype=xp.float64)
    if maps.shape != (batch, 2, 3):
        raise ValueError(
            f"affine_transform: inverse_maps must have shape {(batch, 2, 3)} for images of shape "
            f"{tuple(images.shape)}, got {tuple(maps.shape)}"
        )
    # Where every output pixel reads, (batch, height, width), in float64 so that exact maps
    # (quarter turns, whole-pixel shifts) land on whole pixels.
    x = xp.arange(width, dtype=xp.float64)
    y = xp.arange(height, dtype=xp.float64)[:, None]
    m = maps[:, :, :, None, None]
    x_in = m[:, 0, 0] * x + m[:, 0, 1] * y + m[:, 0, 2]
    y_in = m[:, 1, 0] * x + m[:, 1, 1] * y + m[:, 1, 2]

    if interpolation == "nearest":
        row_taps = [(xp.floor(y_in + 0.5), None)]
        col_taps = [(xp.floor(x_in + 0.5), None)]
    else:
        y0, x0 = xp.floor(y_in), xp.floor(x_in)
        fy, fx = y_in - y0, x_in - x0
        row_taps = [(y0, 1.0 - fy), (y0 + 1.0, fy)]
        col_taps = [(x0, 1.0 - fx), (x0 + 1.0, fx)]
    row_taps = [_fold(index, height, fill_mode, xp) + (weight,) for index, weight in row_taps]
    col_taps = [_fold(index, width, fill_mode, xp) + (weight,) for index, weight in col_taps]

    # One gather per tap from the batch seen as a list of pixels (rows of `channels`).
    compute_dtype = np.result_type(images.dtype, np.float32)
    pixels = images.reshape(batch * height * width, channels)
    image_start = (xp.arange(batch, dtype=xp.int64) * (height * width))[:, None, None]
    fill = xp.asarray(fill_value, dtype=compute_dtype)
    output = None
    for row, row_inside, row_weight in row_taps:
        for col, col_inside, col_weight in col_taps:
            values = pixels[image_start + row * width + col].astype(compute_dtype, copy=False)
            if fill_mode == "constant":
                values = xp.where((row_inside & col_inside)[..., None], values, fill)
            if row_weight is not None:
                values = (row_weight * col_weight).astype(compute_dtype)[..., None] * values
            output = values if output is None else output + values
    return output.astype(images.dtype, copy=False)


def _fold(index, size, fill_mode, xp):
    """Whole-pixel positions (floats, any value) -> indices in [0, size) as fill_mode extends
    the image, and where the position lies inside it (what "constant" needs)."""
    index = index.astype(xp.int64)
    inside = None
    if fill_mode == "reflect":  # period 2 * size: a b c d d c b a
        index = index % (2 * size)
        index = xp.where(index >= size, 2 * size - 1 - index, index)
    elif fill_mode == "wrap":
        index = index % size
    else:
        if fill_mode == "constant":
            inside = (index >= 0) & (index < size)
        index = xp.clip(index, 0, size - 1)
    return index, inside


# --------------------------------------------------------------------------- argument checks


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _factor_bounds(layer, name, factor, minimum, maximum, meaning, minimum_allowed=True):
    """A number f -> (-|f|, |f|); a (lower, upper) pair -> itself. Both bounds must lie in
    [minimum, maximum] (or (minimum, maximum] when minimum_allowed is False)."""
    if _is_number(factor):
        lower, upper = -abs(float(factor)), abs(float(factor))
    elif isinstance(factor, (tuple, list)) and len(factor) == 2 and all(_is_number(v) for v in factor):
        lower, upper = float(factor[0]), float(factor[1])
        if lower > upper:
            raise ValueError(
                f"{layer._describe()}: {name} given as (lower, upper) needs lower <= upper, got {factor!r}"
            )
    else:
        raise ValueError(
            f"{layer._describe()}: {name} must be a number or a (lower, upper) pair of numbers, got {factor!r}"
        )
    below = lower < minimum or (lower == minimum and not minimum_allowed)
    if below or upper > maximum:
        interval = f"{'[' if minimum_allowed else '('}{minimum:g}, {maximum:g}]"
        drawn = f" (the range [{lower:g}, {upper:g}])" if _is_number(factor) else ""
        raise ValueError(
            f"{layer._describe()}: {name} must lie in {interval} ({meaning}), got {factor!r}{drawn}"
        )
    return lower, upper


def _as_given(factor):
    """A factor as get_config returns it: a float, or a (lower, upper) pair of floats."""
    return None if factor is None else float(factor) if _is_number(factor) else tuple(float(v) for v in factor)


# --------------------------------------------------------------------------- layers


class _ImageAugmentation(Layer):
    """Common ground of the augmentation layers: seed, inputs, training switch, config.

    A subclass draws each image's parameters in `get_random_transformation(images)` (a dict
    of numpy arrays, one entry per image) and applies them in `transform_images`.
    """

    input_description = "a 4-D batch (batch, height, width, channels) or a 3-D image (height, width, channels)"

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise ValueError(f"{self._describe()}: seed must be None or an int, got {seed!r}")
        self.seed = None if seed is None else int(seed)
        # A generator of its own: successive calls draw afresh, and a seed repeats them.
        self._generator = utils.generator(self.seed if self.seed is not None else utils.derived_seed())

    def _check_input_shape(self, input_shape):
        if isinstance(input_shape, list) or len(input_shape) not in (3, 4):
            raise ValueError(
                f"{self._describe()} expects {self.input_description}, "
                f"got shape {input_shape if isinstance(input_shape, list) else tuple(input_shape)}"
            )
        super()._check_input_shape(input_shape)

    def _convert_input(self, value):
        tensor = super()._convert_input(value)
        return tensor if tensor.is_floating else tensor.astype(self.dtype)  # uint8 images, say

    def compute_output_shape(self, input_shape):
        return input_shape

    def call(self, inputs, training=False):
        if not training:
            return inputs
        images = inputs.data
        single = images.ndim == 3
        if single:
            images = images[None]
        outputs = self.transform_images(images, self.get_random_transformation(images))
        return Tensor(outputs[0] if single else outputs)

    def get_random_transformation(self, images):
        raise NotImplementedError

    def transform_images(self, images, transformation):
        raise NotImplementedError

    def get_config(self):
        return dict(super().get_config(), seed=self.seed)


class RandomFlip(_ImageAugmentation):
    """In training, flip each image left-right ("horizontal"), upside down ("vertical"), or
    each of the two independently ("horizontal_and_vertical"), each with probability 1/2;
    in inference, the identity. The output records no gradient."""

    def __init__(self, mode="horizontal_and_vertical", seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        if mode not in FLIP_MODES:
            raise ValueError(f"{self._describe()}: mode must be one of {FLIP_MODES}, got {mode!r}")
        self.mode = mode

    def get_random_transformation(self, images):
        """{"horizontal": bool per image, "vertical": bool per image}: which flips to apply."""
        batch = images.shape[0]
        return {
            direction: (self._generator.random(batch) < 0.5) if direction in self.mode else np.zeros(batch, bool)
            for direction in ("horizontal", "vertical")
        }

    def transform_images(self, images, transformation):
        xp = array_module(images)
        outputs = images
        for direction, axis in (("horizontal", 2), ("vertical", 1)):
            flip = transformation[direction]
            if flip.any():
                flip = xp.asarray(flip)[:, None, None, None]
                outputs = xp.where(flip, xp.flip(outputs, axis=axis), outputs)
        return outputs

    def get_config(self):
        return dict(super().get_config(), mode=self.mode)


class _RandomAffine(_ImageAugmentation):
    """An augmentation that resamples each image through an affine map (see the module
    docstring for the index math and the fill modes)."""

    def __init__(self, fill_mode="reflect", interpolation="bilinear", seed=None, fill_value=0.0, **kwargs):
        super().__init__(seed=seed, **kwargs)
        if fill_mode not in FILL_MODES:
            raise ValueError(f"{self._describe()}: fill_mode must be one of {FILL_MODES}, got {fill_mode!r}")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"{self._describe()}: interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}"
            )
        if not isinstance(fill_value, numbers.Real) or isinstance(fill_value, bool):
            raise ValueError(f"{self._describe()}: fill_value must be a number, got {fill_value!r}")
        self.fill_mode, self.interpolation, self.fill_value = fill_mode, interpolation, float(fill_value)

    def inverse_maps(self, transformation, height, width):
        """(batch, 2, 3) float64: where each output pixel of each image reads the input."""
        raise NotImplementedError

    def transform_images(self, images, transformation):
        _, height, width, _ = images.shape
        return affine_transform(images, self.inverse_maps(transformation, height, width),
                                self.interpolation, self.fill_mode, self.fill_value)

    def get_config(self):
        return dict(super().get_config(), fill_mode=self.fill_mode, interpolation=self.interpolation,
                    fill_value=self.fill_value)


def _centre(height, width):
    return (width - 1) / 2.0, (height - 1) / 2.0


class RandomRotation(_RandomAffine):
    """In training, rotate each image about its centre by an angle drawn uniformly from
    [lower, upper] * 2 pi; in inference, the identity. The output records no gradient.

    factor: a fraction of a full turn, f for [-f, f] or a (lower, upper) pair, within
    [-1, 1]. Positive angles turn the picture counter-clockwise, as in Keras:
    factor=(0.25, 0.25) gives np.rot90 of every image.
    """

    def __init__(self, factor, fill_mode="reflect", interpolation="bilinear", seed=None, fill_value=0.0,
                 **kwargs):
        super().__init__(fill_mode, interpolation, seed, fill_value, **kwargs)
        self.lower, self.upper = _factor_bounds(self, "factor", factor, -1.0, 1.0, "a fraction of a full turn")
        self.factor = _as_given(factor)

    def get_random_transformation(self, images):
        """{"angle": radians per image}."""
        return {"angle": self._generator.uniform(self.lower * 2 * math.pi, self.upper * 2 * math.pi,
                                                 images.shape[0])}

    def inverse_maps(self, transformation, height, width):
        cx, cy = _centre(height, width)
        cos, sin = np.cos(transformation["angle"]), np.sin(transformation["angle"])
        return np.stack([
            np.stack([cos, -sin, cx - cos * cx + sin * cy], axis=-1),
            np.stack([sin, cos, cy - sin * cx - cos * cy], axis=-1),
        ], axis=1)

    def get_config(self):
        return dict(super().get_config(), factor=self.factor)


class RandomZoom(_RandomAffine):
    """In training, zoom each image about its centre; in inference, the identity. The output
    records no gradient.

    height_factor: f for [-f, f] or a (lower, upper) pair, within (-1, 1]; the image is read
    over (1 + factor) times its height, so a positive factor zooms out (the picture
    shrinks) and a negative one zooms in: -0.5 shows the central half at twice the size.
    width_factor: the same for the width; None (the default) uses the height's zoom for
    the width too, keeping the aspect ratio.
    """

    def __init__(self, height_factor, width_factor=None, fill_mode="reflect", interpolation="bilinear",
                 seed=None, fill_value=0.0, **kwargs):
        super().__init__(fill_mode, interpolation, seed, fill_value, **kwargs)
        meaning = "the zoom is 1 + factor and must stay above 0"
        self.height_lower, self.height_upper = _factor_bounds(
            self, "height_factor", height_factor, -1.0, 1.0, meaning, minimum_allowed=False)
        if width_factor is not None:
            self.width_lower, self.width_upper = _factor_bounds(
                self, "width_factor", width_factor, -1.0, 1.0, meaning, minimum_allowed=False)
        self.height_factor, self.width_factor = _as_given(height_factor), _as_given(width_factor)

    def get_random_transformation(self, images):
        """{"height_zoom": ..., "width_zoom": ...}: 1 + factor per image (above 1 zooms out)."""
        batch = images.shape[0]
        height_zoom = self._generator.uniform(1.0 + self.height_lower, 1.0 + self.height_upper, batch)
        if self.width_factor is None:
            width_zoom = height_zoom
        else:
            width_zoom = self._generator.uniform(1.0 + self.width_lower, 1.0 + self.width_upper, batch)
        return {"height_zoom": height_zoom, "width_zoom": width_zoom}

    def inverse_maps(self, transformation, height, width):
        cx, cy = _centre(height, width)
        zx, zy = transformation["width_zoom"], transformation["height_zoom"]
        zeros = np.zeros_like(zx)
        return np.stack([
            np.stack([zx, zeros, cx * (1.0 - zx)], axis=-1),
            np.stack([zeros, zy, cy * (1.0 - zy)], axis=-1),
        ], axis=1)

    def get_config(self):
        return dict(super().get_config(), height_factor=self.height_factor, width_factor=self.width_factor)


class RandomTranslation(_RandomAffine):
    """In training, shift each image; in inference, the identity. The output records no
    gradient.

    height_factor: a fraction of the height, f for [-f, f] or a (lower, upper) pair, within
    [-1, 1]; positive shifts move the picture down. width_factor: the same for the width;
    positive shifts move the picture right. A shift of 0.25 on an 8-pixel axis is 2 pixels.
    """

    def __init__(self, height_factor, width_factor, fill_mode="reflect", interpolation="bilinear", seed=None,
                 fill_value=0.0, **kwargs):
        super().__init__(fill_mode, interpolation, seed, fill_value, **kwargs)
        self.height_lower, self.height_upper = _factor_bounds(
            self, "height_factor", height_factor, -1.0, 1.0, "a fraction of the image height")
        self.width_lower, self.width_upper = _factor_bounds(
            self, "width_factor", width_factor, -1.0, 1.0, "a fraction of the image width")
        self.height_factor, self.width_factor = _as_given(height_factor), _as_given(width_factor)

    def get_random_transformation(self, images):
        """{"height_shift": ..., "width_shift": ...}: pixels per image (down, right)."""
        batch, height, width = images.shape[:3]
        height_shift = self._generator.uniform(self.height_lower, self.height_upper, batch) * height
        width_shift = self._generator.uniform(self.width_lower, self.width_upper, batch) * width
        return {"height_shift": height_shift, "width_shift": width_shift}

    def inverse_maps(self, transformation, height, width):
        dx, dy = transformation["width_shift"], transformation["height_shift"]
        ones, zeros = np.ones_like(dx), np.zeros_like(dx)
        return np.stack([
            np.stack([ones, zeros, -dx], axis=-1),
            np.stack([zeros, ones, -dy], axis=-1),
        ], axis=1)

    def get_config(self):
        return dict(super().get_config(), height_factor=self.height_factor, width_factor=self.width_factor)
