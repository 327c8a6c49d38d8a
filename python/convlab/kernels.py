"""One thin Python wrapper per native kernel: validate, allocate, dispatch.

Every function takes NHWC arrays (numpy for the CPU kernels, CuPy for the CUDA ones),
float32 or float64, C-contiguous, all of one dtype, and returns freshly allocated
arrays. Arguments follow Keras: ``strides`` and ``dilation_rate`` are an int or a pair,
``padding`` is ``"valid"``, ``"same"`` (TensorFlow's rule: output ``ceil(in / stride)``,
the smaller half of the padding before) or explicit ``((top, bottom), (left, right))``.

Kernel layouts are Keras': Conv2D ``(kh, kw, cin, cout)``, DepthwiseConv2D
``(kh, kw, cin, depth_multiplier)``, Conv2DTranspose ``(kh, kw, cout, cin)``.

Bad arguments raise TypeError (wrong type or dtype) or ValueError (wrong shape, value or
geometry) naming the argument, the value given and what was expected, before any native
code runs; the native side checks again.

Every kernel also takes ``variant=``: ``"fast"`` (the default) or ``"reference"``, the CUDA
kernels' one-thread-per-output version, written to be obviously right. numpy arrays run
on convlab._cpu, which has the fast variant only; CuPy arrays run on convlab._cuda; and
inside ``host_executor()`` numpy arrays run through the CUDA kernels on the CPU
(convlab._cuda_host), both variants.
"""

from __future__ import annotations

import contextlib
import numbers

import numpy as np

from . import _cpu
from ._backend import (_default_variant, _host_executor, _output_fill, check_variant,
                       empty_output, is_cupy_array, launch)

__all__ = [
    "conv2d_forward", "conv2d_backward_input", "conv2d_backward_kernel", "conv2d_backward_bias",
    "conv2d_transpose_forward", "conv2d_transpose_backward_input",
    "conv2d_transpose_backward_kernel",
    "depthwise_conv2d_forward", "depthwise_conv2d_backward_input",
    "depthwise_conv2d_backward_kernel", "separable_conv2d_forward",
    "max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward", "avg_pool2d_backward",
    "global_avg_pool2d_forward", "global_avg_pool2d_backward",
    "batch_norm_forward_training", "batch_norm_forward_inference", "batch_norm_backward",
    "conv2d_output_shape", "conv2d_transpose_output_shape", "pool2d_output_shape",
    "host_executor", "default_variant", "fill_outputs",
]

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


# ----------------------------------------------------------------------------------------
# argument checks


def _is_int(value) -> bool:
    if type(value) is int:  # the common case, without the slower abstract-class check
        return True
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


# Sizes, strides, dilations and paddings the native geometry accepts (common/geometry.h).
_MAX_EXTENT = 2**31 - 1


def _pair(value, name: str, op: str, minimum: int = 1) -> tuple[int, int]:
    """An int or a pair of ints, each >= minimum."""
    if _is_int(value):
        pair = (int(value), int(value))
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(_is_int(v) for v in value):
        pair = (int(value[0]), int(value[1]))
    else:
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")
    if min(pair) < minimum or max(pair) > _MAX_EXTENT:
        raise ValueError(f"{op}: {name} must be in [{minimum}, 2**31 - 1], got {value!r}")
    return pair


def _padding(padding, op: str, explicit_allowed: bool = True):
    """("valid" | "same" | "explicit", (top, bottom, left, right))."""
    if isinstance(padding, str):
        mode = padding.lower()
        if mode in ("valid", "same"):
            return mode, (0, 0, 0, 0)
        expected = "'valid' or 'same'" + (" or ((top, bottom), (left, right))" if explicit_allowed else "")
        raise ValueError(f"{op}: padding must be {expected}, got {padding!r}")
    if not explicit_allowed:
        raise ValueError(f"{op}: padding must be 'valid' or 'same', got {padding!r}")
    if _is_int(padding):
        pads = (padding,) * 4
    elif (isinstance(padding, (tuple, list)) and len(padding) == 2
          and all(isinstance(p, (tuple, list)) and len(p) == 2 for p in padding)
          and all(_is_int(v) for p in padding for v in p)):
        pads = (padding[0][0], padding[0][1], padding[1][0], padding[1][1])
    elif isinstance(padding, (tuple, list)) and len(padding) == 2 and all(_is_int(v) for v in padding):
        pads = (padding[0], padding[0], padding[1], padding[1])
    else:
        raise TypeError(
            f"{op}: padding must be 'valid', 'same', an int, (pad_h, pad_w) or "
            f"((top, bottom), (left, right)), got {padding!r}")
    pads = tuple(int(p) for p in pads)
    if min(pads) < 0:
        raise ValueError(f"{op}: explicit padding must be >= 0, got {padding!r}")
    return "explicit", pads


def _array(value, name: str, op: str, rank: int | None = None):
    """A float32/float64, C-contiguous, non-empty numpy or CuPy array."""
    if not (isinstance(value, np.ndarray) or is_cupy_array(value)):
        raise TypeError(
            f"{op}: {name} must be a numpy.ndarray (or a CuPy array), got {type(value).__name__}")
    if value.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{op}: {name} has dtype {value.dtype}, expected float32 or float64")
    if rank is not None and value.ndim != rank:
        raise ValueError(
            f"{op}: {name} must have rank {rank}"
            + (" (batch, height, width, channels)" if rank == 4 else "")
            + f", got shape {tuple(value.shape)} (rank {value.ndim})")
    if value.size == 0:
        raise ValueError(f"{op}: {name} is empty, shape {tuple(value.shape)}")
    if not value.flags.c_contiguous:
        raise ValueError(
            f"{op}: {name} must be C-contiguous (a view with strides was given); "
            "pass numpy.ascontiguousarray(...)")
    return value


def _same_kind(op: str, **arrays):
    """All arrays share one dtype and one device."""
    named = [(k, v) for k, v in arrays.items() if v is not None]
    first_name, first = named[0]
    for name, value in named[1:]:
        if value.dtype != first.dtype:
            raise TypeError(
                f"{op}: {name} has dtype {value.dtype} but {first_name} has {first.dtype}; "
                "all inputs must have the same dtype")
        if is_cupy_array(value) != is_cupy_array(first):
            where = lambda a: "a CuPy (GPU) array" if is_cupy_array(a) else "a numpy (CPU) array"
            raise TypeError(
                f"{op}: {name} is {where(value)} but {first_name} is {where(first)}; "
                "move them to one device")
        if is_cupy_array(first) and value.device != first.device:
            raise ValueError(f"{op}: {name} is on {value.device} but {first_name} on {first.device}")
    return first


def _shape(value, name: str, op: str, rank: int) -> tuple[int, ...]:
    if not (isinstance(value, (tuple, list)) and len(value) == rank and all(_is_int(v) for v in value)):
        raise TypeError(f"{op}: {name} must be a tuple of {rank} ints, got {value!r}")
    if min(value) < 1:
        raise ValueError(f"{op}: {name} must have positive sizes, got {tuple(value)!r}")
    return tuple(int(v) for v in value)


def _bias(bias, channels: int, op: str):
    if bias is None:
        return None
    _array(bias, "bias", op, rank=1)
    if bias.shape[0] != channels:
        raise ValueError(f"{op}: bias has shape {tuple(bias.shape)}, expected ({channels},)")
    return bias


def _geometry(factory, op: str, *args, **kwargs):
    """Runs a native geometry factory, prefixing its ValueError with the op's name."""
    try:
        return factory(*args, **kwargs)
    except ValueError as error:
        raise ValueError(f"{op}: {error}") from None


_empty_like_device = empty_output


# ----------------------------------------------------------------------------------------
# where and how the kernels run


@contextlib.contextmanager
def host_executor():
    """Inside this block, numpy arrays run through the CUDA kernels on the CPU.

    The CUDA kernels are block programs (csrc/cuda/exec.h); convlab._cuda_host runs the
    same source on the host, block by block and thread by thread, so a CUDA kernel can be
    tested, stepped through and compared with the CPU kernels on a machine without a GPU.
    It is much slower than convlab._cpu: use it for small shapes.
    """
    token = _host_executor.set(True)
    try:
        yield
    finally:
        _host_executor.reset(token)


@contextlib.contextmanager
def default_variant(variant):
    """Inside this block, kernels called without `variant=` run `variant` ("fast" or
    "reference"; the reference variants are the CUDA kernels' one-thread-per-output
    versions, so they run on CuPy arrays or inside host_executor())."""
    token = _default_variant.set(check_variant(variant, "default_variant"))
    try:
        yield
    finally:
        _default_variant.reset(token)


@contextlib.contextmanager
def fill_outputs(value):
    """Inside this block every output array is filled with `value` before its kernel runs
    (the tests use NaN: an element that a kernel forgets to write then shows)."""
    token = _output_fill.set(value)
    try:
        yield
    finally:
        _output_fill.reset(token)


# ----------------------------------------------------------------------------------------
# geometry


def _conv_geometry(op, input_shape, kernel_size, filters, strides, padding, dilation_rate):
    mode, pads = _padding(padding, op)
    return _geometry(_cpu.conv2d_geometry, op, tuple(input_shape), kernel_size, filters,
                     _pair(strides, "strides", op), _pair(dilation_rate, "dilation_rate", op),
                     mode, pads)


def _transpose_geometry(op, input_shape, kernel_size, filters, strides, padding,
                        output_padding, dilation_rate):
    mode, _ = _padding(padding, op, explicit_allowed=False)
    strides = _pair(strides, "strides", op)
    if output_padding is not None:
        output_padding = _pair(output_padding, "output_padding", op, minimum=0)
        for axis, (p, s) in zip(("height", "width"), zip(output_padding, strides)):
            if p >= s:
                raise ValueError(
                    f"{op}: output_padding along the {axis} must be smaller than the stride "
                    f"{s}, got {p} (Keras requires stride > output_padding)")
    return _geometry(_cpu.conv2d_transpose_geometry, op, tuple(input_shape), kernel_size,
                     filters, strides, _pair(dilation_rate, "dilation_rate", op), mode,
                     output_padding)


def _pool_geometry(op, input_shape, pool_size, strides, padding):
    pool = _pair(pool_size, "pool_size", op)
    strides = pool if strides is None else _pair(strides, "strides", op)
    mode, pads = _padding(padding, op)
    return _geometry(_cpu.pool2d_geometry, op, tuple(input_shape), pool, strides, mode, pads)


def _symbolic_shape(input_shape, op):
    """Accepts None as the batch size (symbolic shapes of layers)."""
    if not (isinstance(input_shape, (tuple, list)) and len(input_shape) == 4):
        raise ValueError(f"{op}: input_shape must be (batch, height, width, channels), got {input_shape!r}")
    batch = input_shape[0]
    shape = (1,) + tuple(input_shape[1:])
    return batch, _shape(shape, "input_shape", op, 4)


def conv2d_output_shape(input_shape, kernel_size, filters, strides=1, padding="valid",
                        dilation_rate=1):
    """Output shape of a Conv2D with Keras semantics; the batch entry may be None."""
    op = "conv2d_output_shape"
    batch, shape = _symbolic_shape(input_shape, op)
    g = _conv_geometry(op, shape, _pair(kernel_size, "kernel_size", op), filters, strides,
                       padding, dilation_rate)
    return (batch, g.out_height, g.out_width, g.out_channels)


def conv2d_transpose_output_shape(input_shape, kernel_size, filters, strides=1, padding="valid",
                                  output_padding=None, dilation_rate=1):
    """Output shape of a Conv2DTranspose (Keras' deconv_output_length per axis)."""
    op = "conv2d_transpose_output_shape"
    batch, shape = _symbolic_shape(input_shape, op)
    g = _transpose_geometry(op, shape, _pair(kernel_size, "kernel_size", op), filters, strides,
                            padding, output_padding, dilation_rate)
    return (batch, g.in_height, g.in_width, g.in_channels)


def pool2d_output_shape(input_shape, pool_size, strides=None, padding="valid"):
    """Output shape of MaxPooling2D / AveragePooling2D."""
    op = "pool2d_output_shape"
    batch, shape = _symbolic_shape(input_shape, op)
    g = _pool_geometry(op, shape, pool_size, strides, padding)
    return (batch, g.out_height, g.out_width, g.out_channels)


# ----------------------------------------------------------------------------------------
# conv2d


def _conv_kernel(kernel, op, in_channels, what="in_channels"):
    _array(kernel, "kernel", op, rank=4)
    if kernel.shape[2] != in_channels:
        raise ValueError(
            f"{op}: kernel has shape {tuple(kernel.shape)}: its {what} (axis 2) is "
            f"{kernel.shape[2]} but the input has {in_channels} channels")
    return kernel


def conv2d_forward(x, kernel, bias=None, strides=1, padding="valid", dilation_rate=1, *,
                   variant=None):
    """y = conv2d(x, kernel) + bias. x (N, H, W, cin), kernel (kh, kw, cin, cout)."""
    op = "conv2d_forward"
    _array(x, "x", op, rank=4)
    _conv_kernel(kernel, op, x.shape[3])
    _bias(bias, kernel.shape[3], op)
    _same_kind(op, x=x, kernel=kernel, bias=bias)
    g = _conv_geometry(op, x.shape, kernel.shape[:2], kernel.shape[3], strides, padding,
                       dilation_rate)
    y = _empty_like_device(x, g.output_shape)
    launch(op, x, g, x, kernel, bias, y, variant=variant)
    return y


def conv2d_backward_input(grad_output, kernel, input_shape, strides=1, padding="valid",
                          dilation_rate=1, *, variant=None):
    """Gradient of sum(grad_output * conv2d(x, kernel)) with respect to x."""
    op = "conv2d_backward_input"
    input_shape = _shape(input_shape, "input_shape", op, 4)
    _array(grad_output, "grad_output", op, rank=4)
    _conv_kernel(kernel, op, input_shape[3])
    _same_kind(op, grad_output=grad_output, kernel=kernel)
    g = _conv_geometry(op, input_shape, kernel.shape[:2], kernel.shape[3], strides, padding,
                       dilation_rate)
    _expect_shape(grad_output, "grad_output", g.output_shape, op)
    grad_x = _empty_like_device(grad_output, input_shape)
    launch(op, grad_output, g, grad_output, kernel, grad_x, variant=variant)
    return grad_x


def conv2d_backward_kernel(x, grad_output, kernel_shape, strides=1, padding="valid",
                           dilation_rate=1, *, variant=None):
    """Gradient of sum(grad_output * conv2d(x, kernel)) with respect to kernel."""
    op = "conv2d_backward_kernel"
    kernel_shape = _shape(kernel_shape, "kernel_shape", op, 4)
    _array(x, "x", op, rank=4)
    _array(grad_output, "grad_output", op, rank=4)
    _same_kind(op, x=x, grad_output=grad_output)
    if kernel_shape[2] != x.shape[3]:
        raise ValueError(f"{op}: kernel_shape {kernel_shape} has in_channels {kernel_shape[2]} "
                         f"but x has {x.shape[3]} channels")
    g = _conv_geometry(op, x.shape, kernel_shape[:2], kernel_shape[3], strides, padding,
                       dilation_rate)
    _expect_shape(grad_output, "grad_output", g.output_shape, op)
    grad_kernel = _empty_like_device(x, kernel_shape)
    launch(op, x, g, x, grad_output, grad_kernel, variant=variant)
    return grad_kernel


def conv2d_backward_bias(grad_output, *, variant=None):
    """Gradient of a per-channel bias: grad_output summed over every axis but the last."""
    op = "conv2d_backward_bias"
    _array(grad_output, "grad_output", op)
    grad_bias = _empty_like_device(grad_output, (grad_output.shape[-1],))
    launch(op, grad_output, grad_output, grad_bias, variant=variant)
    return grad_bias


def _expect_shape(array, name, expected, op):
    if tuple(array.shape) != tuple(expected):
        raise ValueError(f"{op}: {name} has shape {tuple(array.shape)}, expected {tuple(expected)}")


# ----------------------------------------------------------------------------------------
# conv2d transpose


def conv2d_transpose_forward(x, kernel, bias=None, strides=1, padding="valid",
                             output_padding=None, dilation_rate=1, *, variant=None):
    """Keras Conv2DTranspose. x (N, H, W, cin), kernel (kh, kw, cout, cin), bias (cout,)."""
    op = "conv2d_transpose_forward"
    _array(x, "x", op, rank=4)
    _array(kernel, "kernel", op, rank=4)
    if kernel.shape[3] != x.shape[3]:
        raise ValueError(
            f"{op}: kernel has shape {tuple(kernel.shape)} (kh, kw, cout, cin): its cin (axis 3) "
            f"is {kernel.shape[3]} but the input has {x.shape[3]} channels")
    _bias(bias, kernel.shape[2], op)
    _same_kind(op, x=x, kernel=kernel, bias=bias)
    g = _transpose_geometry(op, x.shape, kernel.shape[:2], kernel.shape[2], strides, padding,
                            output_padding, dilation_rate)
    y = _empty_like_device(x, g.input_shape)
    launch(op, x, g, x, kernel, bias, y, variant=variant)
    return y


def conv2d_transpose_backward_input(grad_output, kernel, input_shape, strides=1, padding="valid",
                                    output_padding=None, dilation_rate=1, *, variant=None):
    """Gradient of sum(grad_output * conv2d_transpose(x, kernel)) with respect to x."""
    op = "conv2d_transpose_backward_input"
    input_shape = _shape(input_shape, "input_shape", op, 4)
    _array(grad_output, "grad_output", op, rank=4)
    _array(kernel, "kernel", op, rank=4)
    if kernel.shape[3] != input_shape[3]:
        raise ValueError(f"{op}: kernel has shape {tuple(kernel.shape)} (kh, kw, cout, cin) but "
                         f"input_shape {input_shape} has {input_shape[3]} channels")
    _same_kind(op, grad_output=grad_output, kernel=kernel)
    g = _transpose_geometry(op, input_shape, kernel.shape[:2], kernel.shape[2], strides, padding,
                            output_padding, dilation_rate)
    _expect_shape(grad_output, "grad_output", g.input_shape, op)
    grad_x = _empty_like_device(grad_output, input_shape)
    launch(op, grad_output, g, grad_output, kernel, grad_x, variant=variant)
    return grad_x


def conv2d_transpose_backward_kernel(x, grad_output, kernel_shape, strides=1, padding="valid",
                                     output_padding=None, dilation_rate=1, *, variant=None):
    """Gradient of sum(grad_output * conv2d_transpose(x, kernel)) with respect to kernel."""
    op = "conv2d_transpose_backward_kernel"
    kernel_shape = _shape(kernel_shape, "kernel_shape", op, 4)
    _array(x, "x", op, rank=4)
    _array(grad_output, "grad_output", op, rank=4)
    _same_kind(op, x=x, grad_output=grad_output)
    if kernel_shape[3] != x.shape[3]:
        raise ValueError(f"{op}: kernel_shape {kernel_shape} (kh, kw, cout, cin) has cin "
                         f"{kernel_shape[3]} but x has {x.shape[3]} channels")
    g = _transpose_geometry(op, x.shape, kernel_shape[:2], kernel_shape[2], strides, padding,
                            output_padding, dilation_rate)
    _expect_shape(grad_output, "grad_output", g.input_shape, op)
    grad_kernel = _empty_like_device(x, kernel_shape)
    launch(op, x, g, x, grad_output, grad_kernel, variant=variant)
    return grad_kernel


# ----------------------------------------------------------------------------------------
# depthwise and separable conv2d


def _depthwise_geometry(op, input_shape, kernel_shape, strides, padding, dilation_rate):
    mode, pads = _padding(padding, op)
    return _geometry(_cpu.depthwise_conv2d_geometry, op, tuple(input_shape), kernel_shape[:2],
                     kernel_shape[3], _pair(strides, "strides", op),
                     _pair(dilation_rate, "dilation_rate", op), mode, pads)


def depthwise_conv2d_forward(x, kernel, bias=None, strides=1, padding="valid", dilation_rate=1,
                             *, variant=None):
    """Keras DepthwiseConv2D. x (N, H, W, cin), kernel (kh, kw, cin, depth_multiplier)."""
    op = "depthwise_conv2d_forward"
    _array(x, "x", op, rank=4)
    _conv_kernel(kernel, op, x.shape[3])
    _bias(bias, kernel.shape[2] * kernel.shape[3], op)
    _same_kind(op, x=x, kernel=kernel, bias=bias)
    g = _depthwise_geometry(op, x.shape, kernel.shape, strides, padding, dilation_rate)
    y = _empty_like_device(x, g.output_shape)
    launch(op, x, g, x, kernel, bias, y, variant=variant)
    return y


def depthwise_conv2d_backward_input(grad_output, kernel, input_shape, strides=1,
                                    padding="valid", dilation_rate=1, *, variant=None):
    """Gradient of sum(grad_output * depthwise_conv2d(x, kernel)) with respect to x."""
    op = "depthwise_conv2d_backward_input"
    input_shape = _shape(input_shape, "input_shape", op, 4)
    _array(grad_output, "grad_output", op, rank=4)
    _conv_kernel(kernel, op, input_shape[3])
    _same_kind(op, grad_output=grad_output, kernel=kernel)
    g = _depthwise_geometry(op, input_shape, kernel.shape, strides, padding, dilation_rate)
    _expect_shape(grad_output, "grad_output", g.output_shape, op)
    grad_x = _empty_like_device(grad_output, input_shape)
    launch(op, grad_output, g, grad_output, kernel, grad_x, variant=variant)
    return grad_x


def depthwise_conv2d_backward_kernel(x, grad_output, kernel_shape, strides=1, padding="valid",
                                     dilation_rate=1, *, variant=None):
    """Gradient of sum(grad_output * depthwise_conv2d(x, kernel)) with respect to kernel."""
    op = "depthwise_conv2d_backward_kernel"
    kernel_shape = _shape(kernel_shape, "kernel_shape", op, 4)
    _array(x, "x", op, rank=4)
    _array(grad_output, "grad_output", op, rank=4)
    _same_kind(op, x=x, grad_output=grad_output)
    if kernel_shape[2] != x.shape[3]:
        raise ValueError(f"{op}: kernel_shape {kernel_shape} has in_channels {kernel_shape[2]} "
                         f"but x has {x.shape[3]} channels")
    g = _depthwise_geometry(op, x.shape, kernel_shape, strides, padding, dilation_rate)
    _expect_shape(grad_output, "grad_output", g.output_shape, op)
    grad_kernel = _empty_like_device(x, kernel_shape)
    launch(op, x, g, x, grad_output, grad_kernel, variant=variant)
    return grad_kernel


def separable_conv2d_forward(x, depthwise_kernel, pointwise_kernel, bias=None, strides=1,
                             padding="valid", dilation_rate=1, *, variant=None):
    """Keras SeparableConv2D: depthwise conv (strides, padding, dilation), then a 1x1 conv.

    depthwise_kernel (kh, kw, cin, depth_multiplier), pointwise_kernel
    (1, 1, cin * depth_multiplier, cout). The 1x1 conv runs as a plain GEMM.
    """
    op = "separable_conv2d_forward"
    _array(x, "x", op, rank=4)
    _array(depthwise_kernel, "depthwise_kernel", op, rank=4)
    _array(pointwise_kernel, "pointwise_kernel", op, rank=4)
    _bias(bias, pointwise_kernel.shape[3], op)
    middle = depthwise_kernel.shape[2] * depthwise_kernel.shape[3]
    if pointwise_kernel.shape[:3] != (1, 1, middle):
        raise ValueError(
            f"{op}: pointwise_kernel has shape {tuple(pointwise_kernel.shape)}, expected "
            f"(1, 1, {middle}, filters) for depthwise_kernel {tuple(depthwise_kernel.shape)}")
    _same_kind(op, x=x, depthwise_kernel=depthwise_kernel, pointwise_kernel=pointwise_kernel,
               bias=bias)
    depthwise = depthwise_conv2d_forward(x, depthwise_kernel, None, strides, padding, dilation_rate,
                                         variant=variant)
    return conv2d_forward(depthwise, pointwise_kernel, bias, variant=variant)


# ----------------------------------------------------------------------------------------
# pooling


def max_pool2d_forward(x, pool_size=2, strides=None, padding="valid", *, variant=None):
    """Keras MaxPooling2D; strides=None means strides = pool_size."""
    op = "max_pool2d_forward"
    _array(x, "x", op, rank=4)
    g = _pool_geometry(op, x.shape, pool_size, strides, padding)
    y = _empty_like_device(x, g.output_shape)
    launch(op, x, g, x, y, variant=variant)
    return y


def max_pool2d_backward(x, grad_output, pool_size=2, strides=None, padding="valid", *,
                        variant=None):
    """Routes each output gradient to the first maximum of its window."""
    op = "max_pool2d_backward"
    _array(x, "x", op, rank=4)
    _array(grad_output, "grad_output", op, rank=4)
    _same_kind(op, x=x, grad_output=grad_output)
    g = _pool_geometry(op, x.shape, pool_size, strides, padding)
    _expect_shape(grad_output, "grad_output", g.output_shape, op)
    grad_x = _empty_like_device(x, x.shape)
    launch(op, x, g, x, grad_output, grad_x, variant=variant)
    return grad_x


def avg_pool2d_forward(x, pool_size=2, strides=None, padding="valid", *, variant=None):
    """Keras AveragePooling2D: padded cells are excluded from each average."""
    op = "avg_pool2d_forward"
    _array(x, "x", op, rank=4)
    g = _pool_geometry(op, x.shape, pool_size, strides, padding)
    y = _empty_like_device(x, g.output_shape)
    launch(op, x, g, x, y, variant=variant)
    return y


def avg_pool2d_backward(grad_output, input_shape, pool_size=2, strides=None, padding="valid", *,
                        variant=None):
    """Spreads each output gradient evenly over the real cells of its window."""
    op = "avg_pool2d_backward"
    input_shape = _shape(input_shape, "input_shape", op, 4)
    _array(grad_output, "grad_output", op, rank=4)
    g = _pool_geometry(op, input_shape, pool_size, strides, padding)
    _expect_shape(grad_output, "grad_output", g.output_shape, op)
    grad_x = _empty_like_device(grad_output, input_shape)
    launch(op, grad_output, g, grad_output, grad_x, variant=variant)
    return grad_x


def global_avg_pool2d_forward(x, *, variant=None):
    """Mean over height and width: (N, H, W, C) -> (N, C)."""
    op = "global_avg_pool2d_forward"
    _array(x, "x", op, rank=4)
    y = _empty_like_device(x, (x.shape[0], x.shape[3]))
    launch(op, x, x, y, variant=variant)
    return y


def global_avg_pool2d_backward(grad_output, input_shape, *, variant=None):
    """(N, C) -> (N, H, W, C), each gradient divided by H * W."""
    op = "global_avg_pool2d_backward"
    input_shape = _shape(input_shape, "input_shape", op, 4)
    _array(grad_output, "grad_output", op, rank=2)
    _expect_shape(grad_output, "grad_output", (input_shape[0], input_shape[3]), op)
    grad_x = _empty_like_device(grad_output, input_shape)
    launch(op, grad_output, grad_output, grad_x, variant=variant)
    return grad_x


# ----------------------------------------------------------------------------------------
# batch normalization


def _rows_and_channels(x, op):
    """x of rank >= 2, normalized per channel (the last axis) over all other axes."""
    _array(x, "x", op)
    if x.ndim < 2:
        raise ValueError(f"{op}: x must have rank >= 2 (batch, ..., channels), got shape "
                         f"{tuple(x.shape)}")
    return x.shape[-1]


def _channel_vector(value, name, channels, op, optional=False):
    if value is None and optional:
        return None
    _array(value, name, op, rank=1)
    if value.shape[0] != channels:
        raise ValueError(f"{op}: {name} has shape {tuple(value.shape)}, expected ({channels},) "
                         "(one value per channel, the last axis of x)")
    return value


def _unit_float(value, name, op, low, high, low_open=False):
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"{op}: {name} must be a number, got {value!r}")
    value = float(value)
    if not (np.isfinite(value) and (value > low if low_open else value >= low) and value <= high):
        bound = "(" if low_open else "["
        raise ValueError(f"{op}: {name} must be in {bound}{low}, {high}], got {value!r}")
    return value


def batch_norm_forward_training(x, gamma, beta, moving_mean, moving_variance, momentum=0.99,
                                epsilon=1e-3, *, variant=None):
    """Normalizes x over every axis but the last with the batch statistics.

    Returns (y, batch_mean, batch_variance), the variance biased (divided by the number of
    rows). moving_mean and moving_variance are updated in place, as Keras 3 does:
    moving = moving * momentum + batch_statistic * (1 - momentum).
    """
    op = "batch_norm_forward_training"
    channels = _rows_and_channels(x, op)
    _channel_vector(gamma, "gamma", channels, op, optional=True)
    _channel_vector(beta, "beta", channels, op, optional=True)
    _channel_vector(moving_mean, "moving_mean", channels, op)
    _channel_vector(moving_variance, "moving_variance", channels, op)
    _same_kind(op, x=x, gamma=gamma, beta=beta, moving_mean=moving_mean,
               moving_variance=moving_variance)
    momentum = _unit_float(momentum, "momentum", op, 0.0, 1.0)
    epsilon = _unit_float(epsilon, "epsilon", op, 0.0, np.inf, low_open=True)
    for name, array in (("moving_mean", moving_mean), ("moving_variance", moving_variance)):
        # CuPy arrays are always writeable and their flags have no such entry.
        if not getattr(array.flags, "writeable", True):
            raise ValueError(f"{op}: {name} is read-only but is updated in place")
    y = _empty_like_device(x, x.shape)
    batch_mean = _empty_like_device(x, (channels,))
    batch_variance = _empty_like_device(x, (channels,))
    launch(op, x, 
        x, gamma, beta, moving_mean, moving_variance, momentum, epsilon, y, batch_mean,
        batch_variance, variant=variant)
    return y, batch_mean, batch_variance


def batch_norm_forward_inference(x, gamma, beta, moving_mean, moving_variance, epsilon=1e-3, *,
                                 variant=None):
    """y = gamma * (x - moving_mean) / sqrt(moving_variance + epsilon) + beta."""
    op = "batch_norm_forward_inference"
    channels = _rows_and_channels(x, op)
    _channel_vector(gamma, "gamma", channels, op, optional=True)
    _channel_vector(beta, "beta", channels, op, optional=True)
    _channel_vector(moving_mean, "moving_mean", channels, op)
    _channel_vector(moving_variance, "moving_variance", channels, op)
    _same_kind(op, x=x, gamma=gamma, beta=beta, moving_mean=moving_mean,
               moving_variance=moving_variance)
    epsilon = _unit_float(epsilon, "epsilon", op, 0.0, np.inf, low_open=True)
    y = _empty_like_device(x, x.shape)
    launch(op, x, x, gamma, beta, moving_mean, moving_variance,
                                                   epsilon, y, variant=variant)
    return y


def batch_norm_backward(grad_output, x, gamma, batch_mean, batch_variance, epsilon=1e-3, *,
                        variant=None):
    """Backward of the training forward: (grad_x, grad_gamma, grad_beta).

    The batch statistics depend on x, so grad_x has the two extra terms:
    grad_x = gamma / sqrt(var + eps) / M * (M * dy - sum(dy) - xhat * sum(dy * xhat)).
    """
    op = "batch_norm_backward"
    channels = _rows_and_channels(x, op)
    _array(grad_output, "grad_output", op)
    _expect_shape(grad_output, "grad_output", x.shape, op)
    _channel_vector(gamma, "gamma", channels, op, optional=True)
    _channel_vector(batch_mean, "batch_mean", channels, op)
    _channel_vector(batch_variance, "batch_variance", channels, op)
    _same_kind(op, x=x, grad_output=grad_output, gamma=gamma, batch_mean=batch_mean,
               batch_variance=batch_variance)
    epsilon = _unit_float(epsilon, "epsilon", op, 0.0, np.inf, low_open=True)
    grad_x = _empty_like_device(x, x.shape)
    grad_gamma = _empty_like_device(x, (channels,))
    grad_beta = _empty_like_device(x, (channels,))
    launch(op, x, x, grad_output, gamma, batch_mean, batch_variance,
                                          epsilon, grad_x, grad_gamma, grad_beta, variant=variant)
    return grad_x, grad_gamma, grad_beta
