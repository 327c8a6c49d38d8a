"""Pooling: max, average and global average, forward and backward through the kernels.

Layout NHWC; the channels pass through: x (N, H, W, C) -> y (N, OH, OW, C). Output pixel
(oh, ow) and window tap (i, j) look at input pixel

    ih = oh * sh - pad_top + i        iw = ow * sw - pad_left + j

with pool_size (ph, pw) and strides (sh, sw) (strides=None means strides = pool_size, as in
Keras). Along the height (the width likewise):

    "valid"    OH = floor((H - ph) / sh) + 1                    pad_top = 0
    "same"     OH = ceil(H / sh)                                pad_top = total // 2
               total = max((OH - 1) * sh + ph - H, 0)
    ((top, bottom), (left, right))   explicit padding:
               OH = floor((H + top + bottom - ph) / sh) + 1     pad_top = top

Taps that fall in the padding are skipped: padding never wins a max and never counts in an
average (a window with no tap inside the input, possible only with explicit padding at least
the window's size, gives 0 and passes no gradient).
"""

from .. import kernels
from ..autograd import Function
from .conv import contiguous

__all__ = ["max_pool2d", "avg_pool2d", "global_avg_pool2d"]


class MaxPool2dFunction(Function):
    """max_pool2d with its backward (applied by `max_pool2d`)."""

    def forward(self, x, **geometry):
        """y = kernels.max_pool2d_forward(x); keeps x, from which backward finds the winners again."""
        self.x, self.geometry = contiguous(x), geometry
        return kernels.max_pool2d_forward(self.x, **geometry)

    def backward(self, grad):
        """dL/dx = kernels.max_pool2d_backward(x, g) with g = dL/dy: each g[n, oh, ow, c] goes, whole,
        to the input cell that won its window (the first maximum in row-major tap order, or the first
        NaN); a cell that wins several overlapping windows receives the sum of their gradients."""
        return (kernels.max_pool2d_backward(self.x, contiguous(grad), **self.geometry),)


class AvgPool2dFunction(Function):
    """avg_pool2d with its backward (applied by `avg_pool2d`)."""

    def forward(self, x, **geometry):
        """y = kernels.avg_pool2d_forward(x); keeps only x's shape."""
        self.input_shape, self.geometry = x.shape, geometry
        return kernels.avg_pool2d_forward(contiguous(x), **geometry)

    def backward(self, grad):
        """dL/dx = kernels.avg_pool2d_backward(g, x.shape) with g = dL/dy:

            dx[n, ih, iw, c] = sum over the windows (oh, ow) with a tap on (ih, iw) of g[n, oh, ow, c] / count(oh, ow)

        count(oh, ow) being the number of the window's taps inside the input."""
        return (kernels.avg_pool2d_backward(contiguous(grad), self.input_shape, **self.geometry),)


class GlobalAvgPool2dFunction(Function):
    """global_avg_pool2d with its backward (applied by `global_avg_pool2d`)."""

    def forward(self, x):
        """y = kernels.global_avg_pool2d_forward(x); keeps only x's shape."""
        self.input_shape = x.shape
        return kernels.global_avg_pool2d_forward(contiguous(x))

    def backward(self, grad):
        """dL/dx = kernels.global_avg_pool2d_backward(g, x.shape): dx[n, h, w, c] = g[n, c] / (H * W)."""
        return (kernels.global_avg_pool2d_backward(contiguous(grad), self.input_shape),)


def max_pool2d(x, pool_size=2, strides=None, padding="valid"):
    """Max pooling, as Keras' MaxPooling2D:

        y[n, oh, ow, c] = max over the taps (i, j) inside the input of x[n, ih, iw, c]

    with ih, iw, OH, OW as in the module docstring. Ties go to the first maximum in row-major
    tap order (i outer, j inner), which is where the gradient goes; a NaN in the window is the
    result (it propagates, as in the frameworks).

    x          (N, H, W, C)
    pool_size  an int or a pair (ph, pw); strides likewise, or None for pool_size
    padding    "valid", "same" or explicit ((top, bottom), (left, right))
    y          (N, OH, OW, C)
    """
    return MaxPool2dFunction.apply(x, pool_size=pool_size, strides=strides, padding=padding)


def avg_pool2d(x, pool_size=2, strides=None, padding="valid"):
    """Average pooling, as Keras' AveragePooling2D: the mean of the window's taps inside the input,

        y[n, oh, ow, c] = sum over the taps (i, j) inside the input of x[n, ih, iw, c] / count(oh, ow)

    count(oh, ow) being the number of those taps (padding is not counted: with "same", a window
    over the border averages fewer cells). ih, iw, OH, OW as in the module docstring.

    x          (N, H, W, C)
    pool_size  an int or a pair (ph, pw); strides likewise, or None for pool_size
    padding    "valid", "same" or explicit ((top, bottom), (left, right))
    y          (N, OH, OW, C)
    """
    return AvgPool2dFunction.apply(x, pool_size=pool_size, strides=strides, padding=padding)


def global_avg_pool2d(x):
    """Global average pooling, as Keras' GlobalAveragePooling2D: the mean over height and width,

        y[n, c] = sum_{h, w} x[n, h, w, c] / (H * W)

    x (N, H, W, C) -> y (N, C).
    """
    return GlobalAvgPool2dFunction.apply(x)
