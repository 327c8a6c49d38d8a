"""Reshape, UpSampling2D and Cropping2D: layers that move values, with no weights.

    Reshape(target_shape)                      (batch, ...) -> (batch, *target_shape); one -1 allowed
    UpSampling2D(size=(2, 2), interpolation)   (N, H, W, C) -> (N, sh*H, sw*W, C), "nearest" or "bilinear"
    Cropping2D(cropping=((0, 0), (0, 0)))      (N, H, W, C) -> (N, H-top-bottom, W-left-right, C)

The index math is in convlab.ops.reshaping (upsampling, cropping) and ops.math (reshape).
"""

import math

from .. import ops
from .base import MAX_INT, Layer, is_int
from .convolutional import normalize_tuple

__all__ = ["Reshape", "UpSampling2D", "Cropping2D"]


def _check_data_format(layer, data_format):
    if data_format not in (None, "channels_last"):
        raise ValueError(f"{layer._describe()}: data_format must be None or 'channels_last' (convlab is NHWC), "
                         f"got {data_format!r}")
    return "channels_last"


class Reshape(Layer):
    """Gives each sample the shape `target_shape` (the batch axis is kept). One entry may be
    -1: it takes the size that keeps the number of values."""

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        try:
            shape = tuple(target_shape)
        except TypeError:
            shape = None
        if (shape is None or not all(is_int(n) and (n == -1 or 1 <= n <= MAX_INT) for n in shape)
                or shape.count(-1) > 1):
            raise ValueError(f"{self._describe()}: target_shape must be a tuple of positive ints with at most "
                             f"one -1, got {target_shape!r}")
        self.target_shape = tuple(int(n) for n in shape)

    def _resolved(self, input_shape):
        """target_shape with its -1 worked out (None while the input size is unknown)."""
        sizes = input_shape[1:]
        known = math.prod(n for n in self.target_shape if n != -1)
        if None in sizes:
            return tuple(None if n == -1 else n for n in self.target_shape)
        count = math.prod(sizes)
        if -1 in self.target_shape:
            if count % known:
                raise ValueError(f"{self._describe()}: cannot reshape an input of shape {tuple(input_shape)} "
                                 f"({count} values a sample) into target_shape {self.target_shape}: {count} is "
                                 f"not a multiple of {known}")
            return tuple(count // known if n == -1 else n for n in self.target_shape)
        if count != known:
            raise ValueError(f"{self._describe()}: cannot reshape an input of shape {tuple(input_shape)} "
                             f"({count} values a sample) into target_shape {self.target_shape} ({known} values)")
        return self.target_shape

    def _check_input_shape(self, input_shape):
        super()._check_input_shape(input_shape)
        if not isinstance(input_shape, list):
            self._resolved(input_shape)

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + self._resolved(input_shape)

    def call(self, inputs):
        return ops.reshape(inputs, (inputs.shape[0],) + self._resolved(inputs.shape))

    def get_config(self):
        return dict(super().get_config(), target_shape=self.target_shape)


class UpSampling2D(Layer):
    """Enlarges height and width by whole factors `size` (an int or (rows, columns)).

    interpolation: "nearest" repeats each pixel size[0] x size[1] times; "bilinear" blends
    the neighbouring pixels with their centres aligned, as Keras does (TensorFlow's and
    PyTorch's half-pixel rule).
    """

    input_ndim = 4
    input_description = "(batch, height, width, channels)"

    def __init__(self, size=(2, 2), data_format=None, interpolation="nearest", **kwargs):
        super().__init__(**kwargs)
        self.size = normalize_tuple(size, "size", self._describe())
        self.data_format = _check_data_format(self, data_format)
        if interpolation not in ops.reshaping.UPSAMPLING_INTERPOLATIONS:
            raise ValueError(f"{self._describe()}: interpolation must be one of "
                             f"{ops.reshaping.UPSAMPLING_INTERPOLATIONS}, got {interpolation!r}")
        self.interpolation = interpolation

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        return (n, None if h is None else h * self.size[0], None if w is None else w * self.size[1], c)

    def call(self, inputs):
        return ops.upsampling2d(inputs, self.size, self.interpolation)

    def get_config(self):
        return dict(super().get_config(), size=self.size, data_format=self.data_format,
                    interpolation=self.interpolation)


class Cropping2D(Layer):
    """Removes rows and columns at the edges. cropping: an int (all four sides), a pair
    (symmetric_height, symmetric_width), or ((top, bottom), (left, right))."""

    input_ndim = 4
    input_description = "(batch, height, width, channels)"

    def __init__(self, cropping=((0, 0), (0, 0)), data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.cropping = self._normalize(cropping)
        self.data_format = _check_data_format(self, data_format)

    def _normalize(self, cropping):
        try:
            if is_int(cropping):
                result = ((cropping, cropping), (cropping, cropping))
            elif all(is_int(c) for c in cropping):
                height, width = cropping
                result = ((height, height), (width, width))
            else:
                (top, bottom), (left, right) = cropping
                result = ((top, bottom), (left, right))
        except (TypeError, ValueError):
            result = None
        if result is None or not all(is_int(c) and 0 <= c <= MAX_INT for pair in result for c in pair):
            raise ValueError(f"{self._describe()}: cropping must be an int, (symmetric_height, symmetric_width) or "
                             f"((top, bottom), (left, right)) of ints in [0, {MAX_INT}], got {cropping!r}")
        return tuple((int(a), int(b)) for a, b in result)

    def _check_input_shape(self, input_shape):
        super()._check_input_shape(input_shape)
        (top, bottom), (left, right) = self.cropping
        for axis, what, removed in ((1, "height", top + bottom), (2, "width", left + right)):
            size = input_shape[axis]
            if size is not None and removed >= size:
                raise ValueError(f"{self._describe()}: cropping {self.cropping} removes {removed} of the {size} "
                                 f"{what} pixels of input shape {tuple(input_shape)}; expected fewer than {size}")

    def compute_output_shape(self, input_shape):
        (top, bottom), (left, right) = self.cropping
        n, h, w, c = input_shape
        return (n, None if h is None else h - top - bottom, None if w is None else w - left - right, c)

    def call(self, inputs):
        return ops.cropping2d(inputs, self.cropping)

    def get_config(self):
        return dict(super().get_config(), cropping=self.cropping, data_format=self.data_format)
