"""Pooling: max, average and global average, forward and backward through the kernels.

strides=None means strides = pool_size (Keras). Max pooling sends each window's gradient to
its first maximum; "same" average pooling divides by the number of real (unpadded) cells.
"""

from .. import kernels
from ..autograd import Function
from .conv import contiguous

__all__ = ["max_pool2d", "avg_pool2d", "global_avg_pool2d"]


class MaxPool2D(Function):
    def forward(self, x, **geometry):
        self.x, self.geometry = contiguous(x), geometry
        return kernels.max_pool2d_forward(self.x, **geometry)

    def backward(self, grad):
        return (kernels.max_pool2d_backward(self.x, contiguous(grad), **self.geometry),)


class AvgPool2D(Function):
    def forward(self, x, **geometry):
        self.input_shape, self.geometry = x.shape, geometry
        return kernels.avg_pool2d_forward(contiguous(x), **geometry)

    def backward(self, grad):
        return (kernels.avg_pool2d_backward(contiguous(grad), self.input_shape, **self.geometry),)


class GlobalAvgPool2D(Function):
    def forward(self, x):
        self.input_shape = x.shape
        return kernels.global_avg_pool2d_forward(contiguous(x))

    def backward(self, grad):
        return (kernels.global_avg_pool2d_backward(contiguous(grad), self.input_shape),)


def max_pool2d(x, pool_size=2, strides=None, padding="valid"):
    return MaxPool2D.apply(x, pool_size=pool_size, strides=strides, padding=padding)


def avg_pool2d(x, pool_size=2, strides=None, padding="valid"):
    return AvgPool2D.apply(x, pool_size=pool_size, strides=strides, padding=padding)


def global_avg_pool2d(x):
    return GlobalAvgPool2D.apply(x)
