"""Differentiable operations on Tensors: forward and backward side by side.

    math           arithmetic, reductions, reshape/transpose/slicing/concatenate
    activations    relu, relu6, sigmoid, tanh, softmax, log_softmax
    conv           conv2d, conv2d_transpose, depthwise_conv2d, separable_conv2d (native kernels)
    pooling        max_pool2d, avg_pool2d, global_avg_pool2d (native kernels)
    normalization  batch_norm, training and inference (native kernels)
    nn             dense, dropout, flatten, zero_padding2d, rescaling, add_n
    reshaping      upsampling2d (nearest, bilinear), cropping2d

The same code runs on CPU (numpy) and GPU (CuPy) tensors.
"""

from .math import (  # noqa: F401
    add, subtract, multiply, divide, negative, power, matmul, exp, log, sqrt, abs, maximum,
    sum, mean, max, reshape, transpose, getitem, concatenate, stack, cast, to_device,
)
from .activations import relu, relu6, sigmoid, tanh, softmax, log_softmax, linear  # noqa: F401
from .conv import conv2d, conv2d_transpose, depthwise_conv2d, separable_conv2d  # noqa: F401
from .pooling import max_pool2d, avg_pool2d, global_avg_pool2d  # noqa: F401
from .normalization import batch_norm  # noqa: F401
from .nn import dense, dropout, flatten, zero_padding2d, rescaling, add_n  # noqa: F401
from .reshaping import upsampling2d, cropping2d  # noqa: F401
