"""Upsampling and cropping of NHWC feature maps, each with its backward.

    upsampling2d(x, size=(2, 2), interpolation="nearest")   (N, H, W, C) -> (N, sh*H, sw*W, C)
    cropping2d(x, cropping=((0, 0), (0, 0)))                (N, H, W, C) -> (N, H-t-b, W-l-r, C)

Index math of upsampling by (sh, sw), for output row i and column j:

    nearest    y[n, i, j, c] = x[n, i // sh, j // sw, c]
               backward: each input pixel receives the sum of the sh x sw output pixels
               that copied it.
    bilinear   pixel centres aligned, as Keras (TensorFlow's and PyTorch's half-pixel rule):
               output row i sits at input coordinate  s = (i + 0.5) / sh - 0.5,
               clamped to [0, H - 1]; it reads rows floor(s) and floor(s) + 1 (the last row
               for both at the bottom edge), weighted by 1 - (s - floor(s)) and s - floor(s);
               columns the same way. Written as matrices, one per axis,

                   y = A_h x A_w^T   (for each image and channel; A_h is (sh*H, H), two
                                      nonzeros a row, and A_w (sw*W, W))
               backward: x_grad = A_h^T y_grad A_w, the same matrices transposed.

Cropping reads a window of x (a basic slice); its backward (ops.getitem's) puts the gradient
back into that window of zeros.
"""

import numpy as np

from ..autograd import Function, array_module, as_tensor
from .math import getitem

__all__ = ["upsampling2d", "cropping2d", "bilinear_matrix", "UPSAMPLING_INTERPOLATIONS"]

UPSAMPLING_INTERPOLATIONS = ("nearest", "bilinear")


def bilinear_matrix(size_in, factor, dtype=np.float64):
    """The (factor * size_in, size_in) matrix of half-pixel bilinear upsampling along one axis."""
    size_out = factor * size_in
    source = np.clip((np.arange(size_out) + 0.5) / factor - 0.5, 0, size_in - 1)
    low = np.floor(source).astype(np.int64)
    high = np.minimum(low + 1, size_in - 1)
    weight = source - low
    matrix = np.zeros((size_out, size_in), dtype=dtype)
    rows = np.arange(size_out)
    np.add.at(matrix, (rows, low), 1 - weight)
    np.add.at(matrix, (rows, high), weight)  # at the edge low == high: the weights add up to 1
    return matrix


class Upsampling2dNearestFunction(Function):
    def forward(self, x, *, size):
        self.size = size
        return x.repeat(size[0], axis=1).repeat(size[1], axis=2)

    def backward(self, grad):
        (sh, sw), (n, height, width, channels) = self.size, grad.shape
        blocks = grad.reshape(n, height // sh, sh, width // sw, sw, channels)
        return (blocks.sum(axis=(2, 4)),)


class Upsampling2dBilinearFunction(Function):
    def forward(self, x, *, size):
        xp = array_module(x)
        n, height, width, channels = x.shape
        self.rows = xp.asarray(bilinear_matrix(height, size[0], x.dtype))   # A_h (sh*H, H)
        self.cols = xp.asarray(bilinear_matrix(width, size[1], x.dtype))    # A_w (sw*W, W)
        y = self.rows @ x.reshape(n, height, width * channels)               # along the rows
        y = y.reshape(n * size[0] * height, width, channels)
        y = self.cols @ y                                                    # along the columns
        return y.reshape(n, size[0] * height, size[1] * width, channels)

    def backward(self, grad):
        n, height_out, width_out, channels = grad.shape
        height, width = self.rows.shape[1], self.cols.shape[1]
        g = self.cols.T @ grad.reshape(n * height_out, width_out, channels)  # A_w^T, columns
        g = g.reshape(n, height_out, width * channels)
        g = self.rows.T @ g                                                  # A_h^T, rows
        return (g.reshape(n, height, width, channels),)


def upsampling2d(x, size=(2, 2), interpolation="nearest"):
    """Enlarge the height and width of NHWC x by whole factors size = (sh, sw)."""
    x = as_tensor(x)
    if x.ndim != 4:
        raise ValueError(f"upsampling2d: x must be 4-D (batch, height, width, channels), got shape {x.shape}")
    if interpolation not in UPSAMPLING_INTERPOLATIONS:
        raise ValueError(f"upsampling2d: interpolation must be one of {UPSAMPLING_INTERPOLATIONS}, "
                         f"got {interpolation!r}")
    size = (int(size[0]), int(size[1]))
    if min(size) < 1:
        raise ValueError(f"upsampling2d: size must be two ints >= 1, got {size}")
    function = Upsampling2dNearestFunction if interpolation == "nearest" else Upsampling2dBilinearFunction
    return function.apply(x, size=size)


def cropping2d(x, cropping=((0, 0), (0, 0))):
    """Remove rows and columns at the edges of NHWC x: cropping = ((top, bottom), (left, right))."""
    x = as_tensor(x)
    if x.ndim != 4:
        raise ValueError(f"cropping2d: x must be 4-D (batch, height, width, channels), got shape {x.shape}")
    (top, bottom), (left, right) = ((int(a), int(b)) for a, b in cropping)
    height, width = x.shape[1], x.shape[2]
    if min(top, bottom, left, right) < 0 or top + bottom >= height or left + right >= width:
        raise ValueError(f"cropping2d: cropping {((top, bottom), (left, right))} must be >= 0 and leave at least "
                         f"one row and one column of x of shape {x.shape}")
    window = (slice(None), slice(top, height - bottom), slice(left, width - right), slice(None))
    return getitem(x, window)
