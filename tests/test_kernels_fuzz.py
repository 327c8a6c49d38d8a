"""Malformed calls never crash the process: each raises TypeError or ValueError, or returns
the right answer.

A seeded generator builds a valid call of every kernel, then breaks it in one of many ways
(wrong ranks, mismatched channels, zero or negative sizes, strides and pool sizes, windows
larger than the input, wrong dtypes, mixed dtypes, non-contiguous views, lists instead of
arrays, NaN and inf values, wrong bias lengths, output_padding >= stride, bad padding,
integers too large for the native side, ...). Each break carries what the contract says:

  reject   the call is invalid: it must raise TypeError or ValueError;
  either   the contract allows refusing it (TypeError/ValueError), but a result that comes
           back must equal the reference's on the same (normalized) arguments;
  accept   the call is valid (e.g. NaN inputs): it must return the reference's result.

Every call runs in this process on purpose: a crash in native code fails the whole run.
Run with -v to see which call was running when a crash happens.

Every call runs on every `device` (tests/devices.py), its arrays moved with device.array
(lists, None and the like reach the kernel as built). The argument checks are Python's and
happen before the call is dispatched, so a call refused on a device other than the CPU must
be refused by the CPU kernels with the same exception and the same message.
"""

import math

import numpy as np
import pytest

import devices
import reference
from convlab import kernels
from convlab.testing import assert_close

RTOL = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-4}


# --------------------------------------------------------------------------- valid base calls


def _array(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def _window_geometry(rng, allow_explicit=True, allow_dilation=True, pooling=False):
    """A random valid (input_hw, kernel_hw, strides, padding, dilation, out_hw).

    Pooling pads less than the window on each side, so that no window is all padding."""
    while True:
        input_hw = tuple(int(v) for v in rng.integers(2, 8, 2))
        kernel_hw = tuple(int(v) for v in rng.integers(1, 4, 2))
        strides = int(rng.integers(1, 4)) if rng.random() < 0.7 else tuple(int(v) for v in rng.integers(1, 4, 2))
        choice = rng.integers(0, 3 if allow_explicit else 2)
        padding = ["valid", "same", None][choice]
        if padding is None:
            padding = tuple(tuple(int(v) for v in rng.integers(0, 3, 2)) for _ in range(2))
        dilation = int(rng.choice([1, 1, 2])) if allow_dilation else 1
        out_hw, _ = reference.window_geometry(input_hw, kernel_hw, strides, padding, dilation)
        if pooling and not isinstance(padding, str) and any(p >= k for pads, k in zip(padding, kernel_hw) for p in pads):
            continue
        if min(out_hw) >= 1:
            return input_hw, kernel_hw, strides, padding, dilation, out_hw


def _transpose_geometry(rng):
    while True:
        input_hw = tuple(int(v) for v in rng.integers(1, 5, 2))
        kernel_hw = tuple(int(v) for v in rng.integers(1, 4, 2))
        strides = int(rng.integers(1, 4))
        padding = str(rng.choice(["valid", "same"]))
        output_padding = None if rng.random() < 0.5 else int(rng.integers(0, strides))
        dilation = int(rng.choice([1, 1, 2]))
        out_hw = reference.conv2d_transpose_output_hw(input_hw, kernel_hw, strides, padding, output_padding, dilation)
        if min(out_hw) >= 1:
            return input_hw, kernel_hw, strides, padding, output_padding, dilation, out_hw


def base_call(op, rng, dtype):
    """kwargs of a valid call of kernels.<op>."""
    n = int(rng.integers(1, 3))
    c, c2 = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    if op in ("conv2d_forward", "conv2d_backward_input", "conv2d_backward_kernel"):
        hw, khw, strides, padding, dilation, out_hw = _window_geometry(rng)
        geometry = dict(strides=strides, padding=padding, dilation_rate=dilation)
        x, kernel = _array(rng, (n, *hw, c), dtype), _array(rng, (*khw, c, c2), dtype)
        grad_output = _array(rng, (n, *out_hw, c2), dtype)
        if op == "conv2d_forward":
            return dict(x=x, kernel=kernel, bias=_array(rng, (c2,), dtype), **geometry)
        if op == "conv2d_backward_input":
            return dict(grad_output=grad_output, kernel=kernel, input_shape=x.shape, **geometry)
        return dict(x=x, grad_output=grad_output, kernel_shape=kernel.shape, **geometry)
    if op == "conv2d_backward_bias":
        return dict(grad_output=_array(rng, (n, 3, 2, c), dtype))
    if op.startswith("conv2d_transpose"):
        hw, khw, strides, padding, output_padding, dilation, out_hw = _transpose_geometry(rng)
        geometry = dict(strides=strides, padding=padding, output_padding=output_padding, dilation_rate=dilation)
        x, kernel = _array(rng, (n, *hw, c), dtype), _array(rng, (*khw, c2, c), dtype)
        grad_output = _array(rng, (n, *out_hw, c2), dtype)
        if op == "conv2d_transpose_forward":
            return dict(x=x, kernel=kernel, bias=_array(rng, (c2,), dtype), **geometry)
        if op == "conv2d_transpose_backward_input":
            return dict(grad_output=grad_output, kernel=kernel, input_shape=x.shape, **geometry)
        return dict(x=x, grad_output=grad_output, kernel_shape=kernel.shape, **geometry)
    if op.startswith("depthwise") or op == "separable_conv2d_forward":
        hw, khw, strides, padding, dilation, out_hw = _window_geometry(rng)
        geometry = dict(strides=strides, padding=padding, dilation_rate=dilation)
        dm = int(rng.integers(1, 4))
        x, kernel = _array(rng, (n, *hw, c), dtype), _array(rng, (*khw, c, dm), dtype)
        grad_output = _array(rng, (n, *out_hw, c * dm), dtype)
        if op == "depthwise_conv2d_forward":
            return dict(x=x, kernel=kernel, bias=_array(rng, (c * dm,), dtype), **geometry)
        if op == "depthwise_conv2d_backward_input":
            return dict(grad_output=grad_output, kernel=kernel, input_shape=x.shape, **geometry)
        if op == "depthwise_conv2d_backward_kernel":
            return dict(x=x, grad_output=grad_output, kernel_shape=kernel.shape, **geometry)
        pointwise = _array(rng, (1, 1, c * dm, c2), dtype)
        return dict(x=x, depthwise_kernel=kernel, pointwise_kernel=pointwise, bias=_array(rng, (c2,), dtype), **geometry)
    if op in ("max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward", "avg_pool2d_backward"):
        hw, pool, strides, padding, _, out_hw = _window_geometry(rng, allow_dilation=False, pooling=True)
        if rng.random() < 0.3:
            strides = None
            out_hw, _ = reference.window_geometry(hw, pool, pool, padding)
            if min(out_hw) < 1:
                strides = 1
                out_hw, _ = reference.window_geometry(hw, pool, 1, padding)
        geometry = dict(pool_size=pool, strides=strides, padding=padding)
        x, grad_output = _array(rng, (n, *hw, c), dtype), _array(rng, (n, *out_hw, c), dtype)
        if op.endswith("forward"):
            return dict(x=x, **geometry)
        if op == "max_pool2d_backward":
            return dict(x=x, grad_output=grad_output, **geometry)
        return dict(grad_output=grad_output, input_shape=x.shape, **geometry)
    if op == "global_avg_pool2d_forward":
        return dict(x=_array(rng, (n, 3, 4, c), dtype))
    if op == "global_avg_pool2d_backward":
        return dict(grad_output=_array(rng, (n, c), dtype), input_shape=(n, 3, 4, c))
    shape = [(4, 3, 2, c), (5, c), (2, 3, c)][int(rng.integers(0, 3))]
    x = _array(rng, shape, dtype)
    gamma, beta = _array(rng, (c,), dtype), _array(rng, (c,), dtype)
    moving_mean, moving_variance = _array(rng, (c,), dtype), rng.uniform(0.5, 2, c).astype(dtype)
    if op == "batch_norm_forward_training":
        return dict(x=x, gamma=gamma, beta=beta, moving_mean=moving_mean, moving_variance=moving_variance, momentum=0.9, epsilon=1e-3)
    if op == "batch_norm_forward_inference":
        return dict(x=x, gamma=gamma, beta=beta, moving_mean=moving_mean, moving_variance=moving_variance, epsilon=1e-3)
    rows = x.astype(np.float64).reshape(-1, c)
    return dict(grad_output=_array(rng, shape, dtype), x=x, gamma=gamma,
                batch_mean=rows.mean(0).astype(dtype), batch_variance=rows.var(0).astype(dtype), epsilon=1e-3)


OPS = [
    "conv2d_forward", "conv2d_backward_input", "conv2d_backward_kernel", "conv2d_backward_bias",
    "conv2d_transpose_forward", "conv2d_transpose_backward_input", "conv2d_transpose_backward_kernel",
    "depthwise_conv2d_forward", "depthwise_conv2d_backward_input", "depthwise_conv2d_backward_kernel",
    "separable_conv2d_forward",
    "max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward", "avg_pool2d_backward",
    "global_avg_pool2d_forward", "global_avg_pool2d_backward",
    "batch_norm_forward_training", "batch_norm_forward_inference", "batch_norm_backward",
]
WINDOW_OPS = [op for op in OPS if not op.startswith(("global", "batch_norm")) and op != "conv2d_backward_bias"]
FORWARD_OPS = [op for op in OPS if op.endswith("forward") or op in ("batch_norm_forward_training", "batch_norm_forward_inference")]


def array_names(kwargs):
    return [k for k, v in kwargs.items() if isinstance(v, np.ndarray)]


def main_array(kwargs):
    return "x" if "x" in kwargs else "grad_output"


# --------------------------------------------------------------------------- ways to break a call
# Each takes (op, kwargs, rng) and returns (kwargs, expectation), or None when it does not
# apply to the op.


def wrong_rank(op, kw, rng):
    name = main_array(kw)
    array = kw[name]
    if op.startswith("batch_norm"):
        # The contract asks for rank >= 2; a vector read as one row is a lenient reading.
        if rng.random() < 0.5:
            kw[name] = np.array(1.0, dtype=array.dtype)
            return kw, "reject"
        kw[name] = array.reshape(-1)[: array.shape[-1]].copy()
        return kw, "either" if op != "batch_norm_backward" else "reject"
    kw[name] = array[0] if rng.random() < 0.5 else array[None]
    return kw, "either" if op == "conv2d_backward_bias" else "reject"


def wrong_kernel_rank(op, kw, rng):
    names = [k for k in ("kernel", "depthwise_kernel", "pointwise_kernel") if k in kw]
    if not names:
        return None
    name = names[int(rng.integers(len(names)))]
    kw[name] = kw[name][..., None] if rng.random() < 0.5 else kw[name][0]
    return kw, "reject"


def mismatched_channels(op, kw, rng):
    for name, axis in (("kernel", 2), ("depthwise_kernel", 2), ("pointwise_kernel", 2), ("gamma", 0), ("moving_mean", 0)):
        if name in kw and not (op.startswith("conv2d_transpose") and name == "kernel"):
            shape = list(kw[name].shape)
            shape[axis] += 1
            kw[name] = _array(rng, shape, kw[name].dtype)
            return kw, "reject"
    if op.startswith("conv2d_transpose") and "kernel" in kw:
        shape = list(kw["kernel"].shape)
        shape[3] += 1  # cin of the transposed kernel no longer matches x
        kw["kernel"] = _array(rng, shape, kw["kernel"].dtype)
        return kw, "reject"
    if "input_shape" in kw:
        shape = list(kw["input_shape"])
        shape[3] += 1
        kw["input_shape"] = tuple(shape)
        return kw, "reject"
    if "kernel_shape" in kw:
        shape = list(kw["kernel_shape"])
        shape[2 if not op.startswith("conv2d_transpose") else 3] += 1
        kw["kernel_shape"] = tuple(shape)
        return kw, "reject"
    return None


def mismatched_grad_output(op, kw, rng):
    if "grad_output" not in kw or op == "conv2d_backward_bias":
        return None
    shape = list(kw["grad_output"].shape)
    axis = int(rng.integers(0, len(shape)))
    shape[axis] += 1
    kw["grad_output"] = _array(rng, shape, kw["grad_output"].dtype)
    return kw, "reject"


def zero_size(op, kw, rng):
    name = main_array(kw)
    shape = list(kw[name].shape)
    shape[int(rng.integers(0, len(shape)))] = 0
    kw[name] = np.zeros(shape, kw[name].dtype)
    return kw, "either"


def bad_shape_argument(op, kw, rng):
    names = [k for k in ("input_shape", "kernel_shape") if k in kw]
    if not names:
        return None
    name = names[int(rng.integers(len(names)))]
    shape = list(kw[name])
    choice = int(rng.integers(0, 5))
    if choice == 0:
        shape[int(rng.integers(0, 4))] = -int(rng.integers(1, 3))
    elif choice == 1:
        shape[int(rng.integers(0, 4))] = 0
    elif choice == 2:
        shape = shape[:3]
    elif choice == 3:
        shape[1] = float(shape[1]) + 0.5
    else:
        shape = None
    kw[name] = shape if shape is None else tuple(shape)
    return kw, "reject"


def nonpositive_geometry(op, kw, rng):
    names = [k for k in ("strides", "dilation_rate", "pool_size") if k in kw]
    if not names:
        return None
    name = names[int(rng.integers(len(names)))]
    bad = [0, -1, -2][int(rng.integers(3))]
    kw[name] = bad if rng.random() < 0.5 else (1, bad)
    return kw, "reject"


def window_larger_than_input(op, kw, rng):
    if op not in ("conv2d_forward", "depthwise_conv2d_forward", "max_pool2d_forward", "avg_pool2d_forward", "separable_conv2d_forward"):
        return None
    x = kw["x"]
    kw["padding"] = "valid"
    if "pool_size" in kw:
        kw["pool_size"] = (x.shape[1] + int(rng.integers(1, 3)), 1)
        kw["strides"] = 1
    else:
        name = "kernel" if "kernel" in kw else "depthwise_kernel"
        kernel = kw[name]
        kw[name] = _array(rng, (x.shape[1] + 1, *kernel.shape[1:]), kernel.dtype)
        kw["dilation_rate"] = 1
    return kw, "reject"


def huge_dilation(op, kw, rng):
    # (k - 1) * dilation overflows int64 unless checked: the window is far larger than the input.
    if "dilation_rate" not in kw or op.startswith("conv2d_transpose"):
        return None
    kw["dilation_rate"] = [2**62, 2**61 + 1, 2**40][int(rng.integers(3))]
    kw["padding"] = "valid"
    name = next(k for k in ("kernel", "depthwise_kernel") if k in kw) if "kernel_shape" not in kw else None
    if name is not None:
        kernel = kw[name]
        kw[name] = _array(rng, (3, 3, *kernel.shape[2:]), kernel.dtype)
    else:
        kw["kernel_shape"] = (3, 3, *kw["kernel_shape"][2:])
    return kw, "reject"


def too_large_integer(op, kw, rng):
    names = [k for k in ("strides", "pool_size", "dilation_rate") if k in kw]
    if not names:
        return None
    kw[names[int(rng.integers(len(names)))]] = [2**63, 2**70, -(2**63) - 1][int(rng.integers(3))]
    return kw, "reject"


def huge_stride(op, kw, rng):
    # A valid call (one output pixel per axis), except for a transposed conv, whose output
    # would not fit in memory: left out. (Strides near 2**31 are valid too, but
    # conv2d_backward_input loops over stride_h * stride_w phases and would not finish.)
    if "strides" not in kw or op.startswith("conv2d_transpose"):
        return None
    kw["strides"] = [10**3, (10**6, 1), (2, 10**6)][int(rng.integers(3))]
    if "grad_output" in kw and op != "conv2d_backward_bias":  # the output shrinks
        input_hw = kw["x"].shape[1:3] if "x" in kw else kw["input_shape"][1:3]
        window = kw.get("pool_size") or (kw.get("kernel") if "kernel" in kw else np.empty(kw["kernel_shape"])).shape[:2]
        out_hw, _ = reference.window_geometry(input_hw, reference.pair(window), kw["strides"], kw["padding"], kw.get("dilation_rate", 1))
        shape = kw["grad_output"].shape
        kw["grad_output"] = _array(rng, (shape[0], *out_hw, shape[3]), kw["grad_output"].dtype)
    return kw, "either"


def non_integer_argument(op, kw, rng):
    names = [k for k in ("strides", "pool_size", "dilation_rate") if k in kw]
    if not names:
        return None
    options = [1.5, "2", (1, 2, 3), (2.0, 1), "x"]
    kw[names[int(rng.integers(len(names)))]] = options[int(rng.integers(len(options)))]
    return kw, "reject"


def bad_padding(op, kw, rng):
    if "padding" not in kw:
        return None
    options = ["full", "causal", "", "vaild", None, 1.5, ((1, 1),), ((1, 1), (1, 1), (1, 1)), ((-1, 0), (0, 0)), ((0, 0), (0, -2)), (("a", 0), (0, 0))]
    if op.startswith("conv2d_transpose"):
        options += [((1, 1), (1, 1)), ((0, 0), (0, 0))]  # Keras' Conv2DTranspose has no explicit padding
    kw["padding"] = options[int(rng.integers(len(options)))]
    return kw, "reject"


def int_dtype(op, kw, rng):
    names = array_names(kw)
    name = names[int(rng.integers(len(names)))]
    dtypes = [np.int32, np.int64, np.bool_, np.uint8]
    kw[name] = (kw[name] * 3).astype(dtypes[int(rng.integers(len(dtypes)))])
    return kw, "reject"


def other_float_dtype(op, kw, rng):
    names = array_names(kw)
    name = names[int(rng.integers(len(names)))]
    dtypes = [np.float16, np.complex128, np.longdouble]
    kw[name] = kw[name].astype(dtypes[int(rng.integers(len(dtypes)))])
    return kw, "reject" if kw[name].dtype != np.float64 else "either"  # longdouble is float64 on some platforms


def mixed_dtypes(op, kw, rng):
    names = array_names(kw)
    if len(names) < 2:
        return None
    name = names[int(rng.integers(1, len(names)))]
    other = np.float32 if kw[name].dtype == np.float64 else np.float64
    kw[name] = kw[name].astype(other)
    return kw, "reject"


def non_contiguous(op, kw, rng):
    names = [k for k in array_names(kw) if kw[k].ndim >= 1 and kw[k].size > 1]
    if not names:
        return None
    name = names[int(rng.integers(len(names)))]
    array = kw[name]
    choice = int(rng.integers(0, 3))
    if choice == 1 and array.ndim >= 2:  # Fortran order
        view = np.asfortranarray(array)
    elif choice == 2:  # a reversed view of a reversed copy: the same values, negative strides
        view = array[::-1].copy()[::-1]
    else:  # every other element of a twice longer array
        view = np.repeat(array, 2, axis=-1)[..., ::2]
    np.testing.assert_array_equal(view, array)
    kw[name] = view
    return kw, "either"


def list_instead_of_array(op, kw, rng):
    names = array_names(kw)
    name = names[int(rng.integers(len(names)))]
    kw[name] = kw[name].tolist()
    return kw, "either"


def none_instead_of_array(op, kw, rng):
    kw[main_array(kw)] = None
    return kw, "reject"


def nan_and_inf_values(op, kw, rng):
    if op not in FORWARD_OPS:
        return None
    x = kw["x"].copy()
    values = [np.nan] if op.startswith("batch_norm") else [np.nan, np.inf, -np.inf]
    for _ in range(int(rng.integers(1, 4))):
        index = tuple(int(rng.integers(0, s)) for s in x.shape)
        x[index] = values[int(rng.integers(len(values)))]
    kw["x"] = x
    return kw, "accept"


def wrong_bias(op, kw, rng):
    if "bias" not in kw:
        return None
    bias = kw["bias"]
    choice = int(rng.integers(0, 3))
    kw["bias"] = [_array(rng, (bias.shape[0] + 1,), bias.dtype), _array(rng, (bias.shape[0], 1), bias.dtype),
                  _array(rng, (max(bias.shape[0] - 1, 0),), bias.dtype)][choice]
    return kw, "reject"


def bad_output_padding(op, kw, rng):
    if "output_padding" not in kw:
        return None
    stride = kw["strides"]
    kw["output_padding"] = [stride, stride + 1, -1][int(rng.integers(3))] if rng.random() < 0.6 else (0, stride)
    return kw, "reject"


def bad_batch_norm_scalar(op, kw, rng):
    names = [k for k in ("momentum", "epsilon") if k in kw]
    if not names:
        return None
    name = names[int(rng.integers(len(names)))]
    options = [-0.5, 1.5, math.nan, math.inf, "0.9", None] if name == "momentum" else [0.0, -1e-3, math.nan, math.inf, "1e-3", None]
    kw[name] = options[int(rng.integers(len(options)))]
    return kw, "reject"


def read_only_moving_statistics(op, kw, rng):
    if op != "batch_norm_forward_training":
        return None
    name = ["moving_mean", "moving_variance"][int(rng.integers(2))]
    kw[name] = kw[name].copy()
    kw[name].flags.writeable = False
    return kw, "reject"


def missing_moving_statistics(op, kw, rng):
    names = [k for k in ("moving_mean", "moving_variance", "batch_mean", "batch_variance") if k in kw]
    if not names:
        return None
    kw[names[int(rng.integers(len(names)))]] = None
    return kw, "reject"


BREAKS = [
    wrong_rank, wrong_kernel_rank, mismatched_channels, mismatched_grad_output, zero_size,
    bad_shape_argument, nonpositive_geometry, window_larger_than_input, huge_dilation,
    too_large_integer, huge_stride, non_integer_argument, bad_padding, int_dtype,
    other_float_dtype, mixed_dtypes, non_contiguous, list_instead_of_array,
    none_instead_of_array, nan_and_inf_values, wrong_bias, bad_output_padding,
    bad_batch_norm_scalar, read_only_moving_statistics, missing_moving_statistics,
]


def make_call(index):
    """The index-th fuzz call: (op, break name, kwargs, expectation), or None if the break
    does not apply to the op drawn."""
    rng = np.random.default_rng(20240 + index)
    op = OPS[index % len(OPS)]
    brk = BREAKS[(index // len(OPS) + index) % len(BREAKS)]
    dtype = np.dtype(np.float64 if rng.random() < 0.5 else np.float32)
    kwargs = base_call(op, rng, dtype)
    broken = brk(op, kwargs, rng)
    if broken is None:
        return None
    kwargs, expectation = broken
    return op, brk.__name__, kwargs, expectation


def _cases(count=1000):
    cases = []
    for index in range(count):
        call = make_call(index)
        if call is not None:
            cases.append(pytest.param(index, id=f"{index:03d}-{call[0]}-{call[1]}"))
    return cases


CASES = _cases()


# --------------------------------------------------------------------------- judging a returned result


def normalized_for_reference(kwargs):
    """The arguments as the reference understands them: float64 arrays, Keras padding forms."""
    out = {}
    for key, value in kwargs.items():
        if isinstance(value, (np.ndarray, list)) and key not in ("input_shape", "kernel_shape"):
            value = np.asarray(value, dtype=np.float64)
        out[key] = value
    padding = out.get("padding")
    if isinstance(padding, str):
        out["padding"] = padding.lower()
    return out


def expected_result(op, kwargs):
    function = getattr(reference, op)
    result = function(**normalized_for_reference(kwargs))
    return result


def check_returned(device, op, kwargs, moved, result, description, moving_before):
    """`kwargs`: the call's arguments as built (numpy); `moved`: the same on the device, as
    the kernel got them; `moving_before`: copies of the moving statistics taken before the
    call updated them."""
    try:
        with np.errstate(all="ignore"):
            expected = expected_result(op, {**kwargs, **moving_before})
    except Exception as error:  # the reference cannot make sense of the call
        pytest.fail(f"{description}: returned a result, but the call is invalid ({type(error).__name__}: {error})")
    dtypes = {np.asarray(v).dtype for v in kwargs.values() if isinstance(v, (np.ndarray, list)) and np.asarray(v).dtype.kind == "f"}
    dtype = np.dtype(np.float32) if np.dtype(np.float32) in dtypes else np.dtype(np.float64)
    if op == "batch_norm_forward_training":
        y, mean, variance, new_mean, new_variance = expected
        pairs = list(zip(result, (y, mean, variance), ("y", "batch_mean", "batch_variance")))
        for name, value in (("moving_mean", new_mean), ("moving_variance", new_variance)):
            if not isinstance(moved[name], device.array_type):
                pytest.fail(f"{description}: accepted a {type(moved[name]).__name__} for {name}, which cannot be updated in place")
            pairs.append((moved[name], value, f"{name} (in place)"))
    elif op == "batch_norm_backward":
        pairs = list(zip(result, expected, ("grad_x", "grad_gamma", "grad_beta")))
    else:
        pairs = [(result, expected, "result")]
    for actual, want, name in pairs:
        assert isinstance(actual, device.array_type), f"{description}: {name} is a {type(actual).__name__}"
        assert actual.dtype in (np.float32, np.float64), f"{description}: {name} has dtype {actual.dtype}"
        assert_close(device.numpy(actual), want, rtol=RTOL[dtype], name=f"{description}: {name}")


def moved_to(device, kwargs, description):
    """The call's arguments on the device, or a skip where the device cannot hold one as
    the call built it."""
    try:
        moved = {k: device.array(v) for k, v in kwargs.items()}
    except (TypeError, ValueError) as error:  # e.g. CuPy has no longdouble
        pytest.skip(f"{description}: {device.name} cannot hold the arguments: {error}")
    for name, value in kwargs.items():
        if isinstance(value, np.ndarray) and not value.flags.writeable and getattr(moved[name].flags, "writeable", True):
            pytest.skip(f"{description}: {device.name} has no read-only arrays")
    return moved


def cpu_outcome(op, kwargs):
    """(exception type, message) of the call on the CPU kernels, or None if they return."""
    try:
        devices.on_cpu(getattr(kernels, op), **kwargs)
    except Exception as error:
        return type(error), str(error)
    return None


@pytest.mark.parametrize("index", CASES)
def test_malformed_call_raises_type_or_value_error_or_returns_the_right_result(device, index):
    op, break_name, kwargs, expectation = make_call(index)
    description = f"kernels.{op} with {break_name} ({expectation}) on {device.name}"
    moving = {k: kwargs[k].copy() for k in ("moving_mean", "moving_variance") if isinstance(kwargs.get(k), np.ndarray)}
    moved = moved_to(device, kwargs, description)
    try:
        result = getattr(kernels, op)(**moved)
    except (TypeError, ValueError) as error:
        assert str(error), f"{description}: {type(error).__name__} with an empty message"
        assert expectation != "accept", f"{description}: a valid call raised {type(error).__name__}: {error}"
        for name, before in moving.items():  # a refused call leaves the moving statistics alone
            np.testing.assert_array_equal(device.numpy(moved[name]), before, err_msg=f"{description}: {name} changed by a refused call")
        if device.name != "cpu":
            on_cpu = cpu_outcome(op, kwargs)
            assert on_cpu == (type(error), str(error)), (
                f"{description}: refused with {type(error).__name__}: {error}\n"
                f"but on the CPU kernels: {'returned a result' if on_cpu is None else f'{on_cpu[0].__name__}: {on_cpu[1]}'}")
        return
    except Exception as error:
        pytest.fail(f"{description}: raised {type(error).__name__} (expected TypeError or ValueError): {error}")
    assert expectation != "reject", f"{description}: an invalid call returned instead of raising"
    check_returned(device, op, kwargs, moved, result, description, moving)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("op", OPS)
def test_unbroken_base_calls_return_the_reference_result(device, op, seed):
    # The calls the breaks start from are valid, so a refusal above is due to the break.
    rng = np.random.default_rng(seed)
    kwargs = base_call(op, rng, np.dtype(np.float64 if seed % 2 else np.float32))
    moving = {k: kwargs[k].copy() for k in ("moving_mean", "moving_variance") if k in kwargs}
    moved = {k: device.array(v) for k, v in kwargs.items()}
    result = getattr(kernels, op)(**moved)
    check_returned(device, op, kwargs, moved, result, f"kernels.{op} (valid call on {device.name})", moving)


def test_fuzz_covers_every_kernel_and_every_way_of_breaking_a_call():
    calls = [make_call(case.values[0]) for case in CASES]
    assert len(calls) >= 200
    assert {call[0] for call in calls} == set(OPS)
    assert {call[1] for call in calls} == {brk.__name__ for brk in BREAKS}


# --------------------------------------------------------------------------- integer overflow in the geometry

HUGE = 2**62  # (3 - 1) * HUGE + 1 = 2**63 + 1 does not fit in int64


def test_dilation_beyond_the_image_leaves_only_the_centre_tap_in_same_padding(rng):
    # The premise of the overflow tests below, shown with the reference at a dilation it
    # can afford: once the dilation exceeds the image, "same" padding keeps one tap.
    x = rng.standard_normal((1, 5, 5, 2))
    kernel = rng.standard_normal((3, 3, 2, 1))
    assert_close(reference.conv2d_forward(x, kernel, None, 1, "same", 7), x @ kernel[1, 1], rtol=1e-12)
    transposed_kernel = rng.standard_normal((3, 3, 1, 2))
    assert_close(reference.conv2d_transpose_forward(x, transposed_kernel, None, 1, "same", None, 7), x @ transposed_kernel[1, 1].T, rtol=1e-12)


def test_same_padding_with_a_dilation_overflowing_int64_is_refused_or_exact(device, rng):
    x = rng.standard_normal((1, 5, 5, 2))
    kernel = rng.standard_normal((3, 3, 2, 1))
    transposed_kernel = rng.standard_normal((3, 3, 1, 2))
    depthwise_kernel = rng.standard_normal((3, 3, 2, 1))
    on = device.array
    cases = [
        ("conv2d_forward", lambda: kernels.conv2d_forward(on(x), on(kernel), None, 1, "same", HUGE), x @ kernel[1, 1]),
        ("conv2d_transpose_forward", lambda: kernels.conv2d_transpose_forward(on(x), on(transposed_kernel), None, 1, "same", None, HUGE), x @ transposed_kernel[1, 1].T),
        ("depthwise_conv2d_forward", lambda: kernels.depthwise_conv2d_forward(on(x), on(depthwise_kernel), None, 1, "same", HUGE), x * depthwise_kernel[1, 1, :, 0]),
    ]
    wrong = []
    for name, call, exact in cases:
        try:
            result = device.numpy(call())
        except (TypeError, ValueError):
            continue
        if result.shape != exact.shape or not np.allclose(result, exact, rtol=1e-12, atol=1e-12):
            wrong.append(f"{name}: max error {np.max(np.abs(result - exact)) if result.shape == exact.shape else result.shape}")
    assert not wrong, "dilation 2**62 with 'same' padding returned wrong results: " + "; ".join(wrong)


def test_geometry_overflowing_int64_raises_instead_of_wrapping(device, rng):
    x, kernel = device.arrays(rng.standard_normal((1, 5, 5, 1)), rng.standard_normal((3, 3, 1, 1)))
    calls = {
        # the dilated window (2**63 + 1) is larger than the input: no output
        "conv2d_output_shape(valid, dilation 2**62)": lambda: kernels.conv2d_output_shape((None, 5, 5, 1), 3, 1, 1, "valid", HUGE),
        "conv2d_forward(valid, dilation 2**62)": lambda: kernels.conv2d_forward(x, kernel, None, 1, "valid", HUGE),
        # Keras' output length 5 + 2**63 is not representable
        "conv2d_transpose_forward(valid, dilation 2**62)": lambda: kernels.conv2d_transpose_forward(x, kernel, None, 1, "valid", None, HUGE),
    }
    returned = {}
    for name, call in calls.items():
        try:
            result = call()
        except (TypeError, ValueError):
            continue
        returned[name] = getattr(result, "shape", result)
    assert not returned, f"returned instead of raising: {returned}"
    # 5 * 2**62 is representable in Python: refusing it or computing it exactly are both right.
    try:
        shape = kernels.conv2d_transpose_output_shape((None, 5, 5, 1), 3, 1, HUGE, "same")
    except (TypeError, ValueError):
        return
    assert shape == (None, 5 * HUGE, 5 * HUGE, 1)
