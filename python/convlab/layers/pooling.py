"""MaxPooling2D, AveragePooling2D (strides default to pool_size), GlobalAveragePooling2D and
GlobalMaxPooling2D."""

from .. import kernels, ops
from .base import Layer
from .convolutional import normalize_padding, normalize_tuple, spatial_output_shape

__all__ = ["MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D"]


class _Pooling2D(Layer):
    input_ndim = 4
    input_description = "(batch, height, width, channels)"

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", **kwargs):
        super().__init__(**kwargs)
        where = self._describe()
        self.pool_size = normalize_tuple(pool_size, "pool_size", where)
        self.strides = self.pool_size if strides is None else normalize_tuple(strides, "strides", where)
        self.padding = normalize_padding(padding, where)

    @property
    def geometry(self):
        return {"pool_size": self.pool_size, "strides": self.strides, "padding": self.padding}

    def compute_output_shape(self, input_shape):
        return spatial_output_shape(kernels.pool2d_output_shape, input_shape, **self.geometry)

    def get_config(self):
        return dict(super().get_config(), **self.geometry)


class MaxPooling2D(_Pooling2D):
    """The maximum of each pool_size window, moved by strides."""

    def call(self, inputs):
        return ops.max_pool2d(inputs, **self.geometry)


class AveragePooling2D(_Pooling2D):
    """The mean of each window; with "same" padding, padded cells are not counted."""

    def call(self, inputs):
        return ops.avg_pool2d(inputs, **self.geometry)


class GlobalAveragePooling2D(Layer):
    """The mean of each channel over height and width: (N, H, W, C) -> (N, C)."""

    input_ndim = 4
    input_description = "(batch, height, width, channels)"

    def __init__(self, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        self.keepdims = keepdims

    def compute_output_shape(self, input_shape):
        batch, channels = input_shape[0], input_shape[-1]
        return (batch, 1, 1, channels) if self.keepdims else (batch, channels)

    def call(self, inputs):
        y = ops.global_avg_pool2d(inputs)
        return ops.reshape(y, (y.shape[0], 1, 1, y.shape[1])) if self.keepdims else y

    def get_config(self):
        return dict(super().get_config(), keepdims=self.keepdims)


class GlobalMaxPooling2D(GlobalAveragePooling2D):
    """The maximum of each channel over height and width: (N, H, W, C) -> (N, C).
    Ties share the gradient equally (ops.max)."""

    def call(self, inputs):
        return ops.max(inputs, axis=(1, 2), keepdims=self.keepdims)
