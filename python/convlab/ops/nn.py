"""The remaining layer operations, in numpy/CuPy: dense, dropout, flatten, zero padding,
rescaling, and the n-ary add used by residual connections.
"""

import numpy as np

from ..autograd import Function, array_module, as_tensor
from . import math

__all__ = ["dense", "dropout", "flatten", "zero_padding2d", "rescaling", "add_n"]


class DenseFunction(Function):
    """y = x @ kernel + bias, x (N, in), kernel (in, out), bias (out,) or None."""

    def forward(self, x, kernel, bias):
        self.x, self.kernel = x, kernel
        y = x @ kernel
        return y if bias is None else y + bias

    def backward(self, grad):
        need_x, need_kernel, need_bias = self.needs_input_grad
        return (
            grad @ self.kernel.T if need_x else None,
            self.x.T @ grad if need_kernel else None,
            grad.sum(axis=0) if need_bias else None,
        )


def dense(x, kernel, bias=None):
    x, kernel = as_tensor(x), as_tensor(kernel)
    if x.ndim != 2 or kernel.ndim != 2 or x.shape[1] != kernel.shape[0]:
        raise ValueError(
            f"dense: expected x (batch, {kernel.shape[0] if kernel.ndim == 2 else 'in'}) and kernel "
            f"(in, out), got x {x.shape} and kernel {kernel.shape}"
        )
    return DenseFunction.apply(x, kernel, bias)


class DropoutFunction(Function):
    """Inverted dropout: keep each value with probability 1 - rate and scale it by 1 / (1 - rate)."""

    def forward(self, x, *, rate, rng, noise_shape):
        keep = rng.random(noise_shape) >= rate  # drawn on the host, so CPU and GPU runs repeat
        mask = (keep / (1.0 - rate)).astype(x.dtype)
        self.mask = array_module(x).asarray(mask)
        return x * self.mask

    def backward(self, grad):
        return (grad * self.mask,)


def dropout(x, rate, seed=None, noise_shape=None):
    """Zero each value of x with probability `rate`, scale the rest by 1 / (1 - rate).

    `seed` is an int or a numpy Generator (a layer passes its own, so successive calls draw
    fresh masks); None draws from convlab.utils' global generator. `noise_shape` (with None
    for "the input's size") shares one mask value along the axes where it is 1.
    """
    from .. import utils

    x = as_tensor(x)
    if not 0 <= rate < 1:
        raise ValueError(f"dropout: rate must be in [0, 1), got {rate}")
    if rate == 0:
        return x
    rng = utils.generator(seed)
    if noise_shape is None:
        noise_shape = x.shape
    else:
        noise_shape = tuple(n if n is not None else m for n, m in zip(noise_shape, x.shape))
        np.broadcast_shapes(noise_shape, x.shape)
    return DropoutFunction.apply(x, rate=rate, rng=rng, noise_shape=noise_shape)


def flatten(x):
    """(N, d1, d2, ...) -> (N, d1 * d2 * ...)."""
    x = as_tensor(x)
    return math.reshape(x, (x.shape[0], int(np.prod(x.shape[1:]))))


class ZeroPadding2dFunction(Function):
    def forward(self, x, *, padding):
        (top, bottom), (left, right) = self.padding = padding
        return array_module(x).pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))

    def backward(self, grad):
        (top, bottom), (left, right) = self.padding
        return (grad[:, top:grad.shape[1] - bottom, left:grad.shape[2] - right, :],)


def zero_padding2d(x, padding=((1, 1), (1, 1))):
    """Pad the height and width of NHWC x with zeros: ((top, bottom), (left, right))."""
    x = as_tensor(x)
    if x.ndim != 4:
        raise ValueError(f"zero_padding2d: expected a 4-D NHWC input, got shape {x.shape}")
    padding = tuple((int(a), int(b)) for a, b in padding)
    return ZeroPadding2dFunction.apply(x, padding=padding)


def rescaling(x, scale, offset=0.0):
    """x * scale + offset (scale and offset: numbers or arrays that broadcast over x)."""
    x = as_tensor(x)
    y = x * as_tensor(np.asarray(scale, dtype=x.dtype), like=x)
    return y if np.all(np.asarray(offset) == 0) else y + as_tensor(np.asarray(offset, dtype=x.dtype), like=x)


def add_n(tensors):
    """The elementwise sum of a list of tensors of one shape (a residual connection)."""
    tensors = [as_tensor(t) for t in tensors]
    for t in tensors[1:]:
        if t.shape != tensors[0].shape:
            shapes = ", ".join(str(t.shape) for t in tensors)
            raise ValueError(f"add: all inputs must have the same shape, got {shapes}")
    total = tensors[0]
    for t in tensors[1:]:
        total = total + t
    return total
