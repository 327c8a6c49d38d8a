"""Direct claims about the CUDA kernels' two variants and about choosing a variant.

- On the host executor (and on a GPU where there is one), the fast and the reference
  variant of every CUDA kernel agree with the CPU kernel, on shapes that span several tiles
  of the fast kernels (more than 128 output pixels, more than 64 channels) as well as
  small and odd ones.
- The same call twice gives bit-identical results, on every device.
- variant="reference" on numpy arrays outside host_executor() is refused with a ValueError
  naming the variant; a variant that does not exist with a ValueError naming the argument.
- CuPy arrays where CUDA cannot run raise a RuntimeError naming cuda_available().reason.
"""

import re

import numpy as np
import pytest

import convlab
import devices
from convlab import kernels
from convlab.testing import assert_close

RTOL = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-4}
DTYPES = [pytest.param(np.dtype(np.float64), id="float64"), pytest.param(np.dtype(np.float32), id="float32")]


def normal(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


# --------------------------------------------------------------------------- calls
# Each case builds the kwargs of one valid call of a kernel from (rng, dtype).


def conv_calls(case_id, n, h, w, cin, cout, ksize, strides=1, padding="valid", dilation=1):
    geometry = dict(strides=strides, padding=padding, dilation_rate=dilation)
    out = kernels.conv2d_output_shape((n, h, w, cin), ksize, cout, **geometry)
    out = (n, *out[1:])
    kernel_shape = (*ksize, cin, cout)
    return {
        "conv2d_forward": lambda rng, dt: dict(
            x=normal(rng, (n, h, w, cin), dt), kernel=normal(rng, kernel_shape, dt), bias=normal(rng, (cout,), dt), **geometry),
        "conv2d_backward_input": lambda rng, dt: dict(
            grad_output=normal(rng, out, dt), kernel=normal(rng, kernel_shape, dt), input_shape=(n, h, w, cin), **geometry),
        "conv2d_backward_kernel": lambda rng, dt: dict(
            x=normal(rng, (n, h, w, cin), dt), grad_output=normal(rng, out, dt), kernel_shape=kernel_shape, **geometry),
    }, case_id


def transpose_calls(case_id, n, h, w, cin, cout, ksize, strides, padding, output_padding=None, dilation=1):
    geometry = dict(strides=strides, padding=padding, output_padding=output_padding, dilation_rate=dilation)
    out = kernels.conv2d_transpose_output_shape((n, h, w, cin), ksize, cout, **geometry)
    out = (n, *out[1:])
    kernel_shape = (*ksize, cout, cin)
    return {
        "conv2d_transpose_forward": lambda rng, dt: dict(
            x=normal(rng, (n, h, w, cin), dt), kernel=normal(rng, kernel_shape, dt), bias=normal(rng, (cout,), dt), **geometry),
        "conv2d_transpose_backward_input": lambda rng, dt: dict(
            grad_output=normal(rng, out, dt), kernel=normal(rng, kernel_shape, dt), input_shape=(n, h, w, cin), **geometry),
        "conv2d_transpose_backward_kernel": lambda rng, dt: dict(
            x=normal(rng, (n, h, w, cin), dt), grad_output=normal(rng, out, dt), kernel_shape=kernel_shape, **geometry),
    }, case_id


def depthwise_calls(case_id, n, h, w, cin, dm, ksize, strides=1, padding="valid", dilation=1):
    geometry = dict(strides=strides, padding=padding, dilation_rate=dilation)
    out = kernels.conv2d_output_shape((n, h, w, cin), ksize, cin * dm, **geometry)
    out = (n, *out[1:])
    kernel_shape = (*ksize, cin, dm)
    return {
        "depthwise_conv2d_forward": lambda rng, dt: dict(
            x=normal(rng, (n, h, w, cin), dt), kernel=normal(rng, kernel_shape, dt), bias=normal(rng, (cin * dm,), dt), **geometry),
        "depthwise_conv2d_backward_input": lambda rng, dt: dict(
            grad_output=normal(rng, out, dt), kernel=normal(rng, kernel_shape, dt), input_shape=(n, h, w, cin), **geometry),
        "depthwise_conv2d_backward_kernel": lambda rng, dt: dict(
            x=normal(rng, (n, h, w, cin), dt), grad_output=normal(rng, out, dt), kernel_shape=kernel_shape, **geometry),
    }, case_id


def separable_calls(case_id, n, h, w, cin, dm, cout, strides=1, padding="valid", dilation=1):
    return {
        "separable_conv2d_forward": lambda rng, dt: dict(
            x=normal(rng, (n, h, w, cin), dt), depthwise_kernel=normal(rng, (3, 3, cin, dm), dt),
            pointwise_kernel=normal(rng, (1, 1, cin * dm, cout), dt), bias=normal(rng, (cout,), dt),
            strides=strides, padding=padding, dilation_rate=dilation),
    }, case_id


def pool_calls(case_id, n, h, w, c, pool_size, strides, padding, ties=False):
    geometry = dict(pool_size=pool_size, strides=strides, padding=padding)
    out = kernels.pool2d_output_shape((n, h, w, c), **geometry)
    out = (n, *out[1:])

    def x(rng, dt):  # ties: small integers, so that many windows hold several maxima
        return rng.integers(0, 3, (n, h, w, c)).astype(dt) if ties else normal(rng, (n, h, w, c), dt)

    return {
        "max_pool2d_forward": lambda rng, dt: dict(x=x(rng, dt), **geometry),
        "max_pool2d_backward": lambda rng, dt: dict(x=x(rng, dt), grad_output=normal(rng, out, dt), **geometry),
        "avg_pool2d_forward": lambda rng, dt: dict(x=x(rng, dt), **geometry),
        "avg_pool2d_backward": lambda rng, dt: dict(grad_output=normal(rng, out, dt), input_shape=(n, h, w, c), **geometry),
    }, case_id


def global_pool_calls(case_id, shape):
    return {
        "global_avg_pool2d_forward": lambda rng, dt: dict(x=normal(rng, shape, dt)),
        "global_avg_pool2d_backward": lambda rng, dt: dict(grad_output=normal(rng, (shape[0], shape[3]), dt), input_shape=shape),
    }, case_id


def bias_calls(case_id, shape):
    return {"conv2d_backward_bias": lambda rng, dt: dict(grad_output=normal(rng, shape, dt))}, case_id


def batch_norm_calls(case_id, shape, affine=True):
    # Many rows per channel: grad_x does not cancel to a fraction of its terms.
    c = shape[-1]

    def common(rng, dt):
        x = (normal(rng, shape, dt) * 2 + 0.5).astype(dt)
        gamma, beta = (normal(rng, (c,), dt), normal(rng, (c,), dt)) if affine else (None, None)
        return x, gamma, beta

    def training(rng, dt):
        x, gamma, beta = common(rng, dt)
        return dict(x=x, gamma=gamma, beta=beta, moving_mean=normal(rng, (c,), dt),
                    moving_variance=rng.uniform(0.5, 2, c).astype(dt), momentum=0.9, epsilon=1e-3)

    def inference(rng, dt):
        kwargs = training(rng, dt)
        del kwargs["momentum"]
        return kwargs

    def backward(rng, dt):
        x, gamma, _ = common(rng, dt)
        rows = x.astype(np.float64).reshape(-1, c)
        return dict(grad_output=normal(rng, shape, dt), x=x, gamma=gamma, batch_mean=rows.mean(0).astype(dt),
                    batch_variance=rows.var(0).astype(dt), epsilon=1e-3)

    return {"batch_norm_forward_training": training, "batch_norm_forward_inference": inference,
            "batch_norm_backward": backward}, case_id


FAMILIES = [
    conv_calls("tiles", 2, 9, 10, 35, 70, (3, 3), 1, "same"),  # 180 pixels x 70 channels, K = 315
    conv_calls("1x1-wide", 3, 5, 6, 8, 130, (1, 1)),
    conv_calls("strided-dilated-explicit", 1, 11, 9, 3, 5, (3, 2), (2, 1), ((1, 2), (0, 1)), 2),
    conv_calls("kernel-larger-than-input-same", 1, 4, 5, 2, 2, (5, 5), 2, "same"),
    bias_calls("many-rows", (4, 9, 9, 70)),
    bias_calls("matrix", (700, 3)),
    transpose_calls("tiles-stride2-same", 2, 6, 7, 20, 70, (3, 3), 2, "same"),
    transpose_calls("stride3-valid-output-padding", 1, 4, 5, 3, 2, (4, 3), 3, "valid", 1),
    transpose_calls("dilation2", 1, 3, 4, 2, 3, (3, 3), 1, "same", None, 2),
    depthwise_calls("many-channels", 2, 12, 11, 40, 1, (3, 3), 1, "same"),
    depthwise_calls("dm3-5x5-stride2", 1, 9, 9, 3, 3, (5, 5), 2, "same"),
    depthwise_calls("dilated-explicit", 1, 8, 7, 2, 2, (2, 3), (1, 2), ((2, 0), (1, 1)), 2),
    separable_calls("dm2-stride2", 1, 9, 8, 5, 2, 9, 2, "same"),
    separable_calls("wide", 2, 7, 7, 3, 1, 70, 1, "valid"),
    pool_calls("3x3-stride2-same-many-channels", 2, 13, 14, 70, 3, 2, "same"),
    pool_calls("2x3-asymmetric-valid", 1, 8, 9, 5, (2, 3), (1, 2), "valid"),
    pool_calls("explicit-ties", 2, 6, 6, 2, 3, 2, ((1, 1), (1, 0)), ties=True),
    global_pool_calls("large", (3, 17, 19, 70)),
    global_pool_calls("1x1-wide", (2, 1, 1, 300)),
    batch_norm_calls("nhwc", (16, 8, 8, 70)),
    batch_norm_calls("matrix-no-affine", (300, 5), affine=False),
    batch_norm_calls("rank3", (2, 5, 6, 9)),
]

CASES = [pytest.param(op, build, id=f"{op}-{case_id}") for calls, case_id in FAMILIES for op, build in calls.items()]
FIRST_CASES = [pytest.param(*case.values, id=op) for op in kernels.__all__
               for case in [next((c for c in CASES if c.values[0] == op), None)] if case is not None]
NOT_CPU = [param for param in devices.PARAMS if param.id != "cpu"]


def run(op, kwargs, to_device=lambda a: a):
    """The outputs of kernels.<op> on copies of the arrays in kwargs (moved by to_device),
    as a list; for the training forward, the moving statistics it updated in place too."""
    moved = {k: to_device(v.copy()) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    result = getattr(kernels, op)(**moved)
    outputs = list(result) if isinstance(result, tuple) else [result]
    if op == "batch_norm_forward_training":
        outputs += [moved["moving_mean"], moved["moving_variance"]]
    return outputs


# --------------------------------------------------------------------------- claims


def test_the_device_fixture_runs_the_kernels_where_it_says(device, monkeypatch):
    # The module each device names is the one called, with the device's variant, on an
    # output that fill_outputs(np.nan) has filled before the kernel writes it.
    from convlab import _backend

    module = {"cpu": _backend._cpu, "host": _backend._cuda_host, "cuda": _backend._cuda_module}[device.kind]
    original, calls = module.max_pool2d_forward, []

    def recording(*args, **kwargs):
        calls.append((kwargs["variant"], bool(device.xp.isnan(args[-1]).all())))
        return original(*args, **kwargs)

    monkeypatch.setattr(module, "max_pool2d_forward", recording)
    y = kernels.max_pool2d_forward(device.array(np.ones((1, 4, 4, 2))))
    assert calls == [(device.variant or "fast", True)]
    assert isinstance(y, device.array_type)
    assert_close(device.numpy(y), np.ones((1, 2, 2, 2)), rtol=0)


def test_every_kernel_has_cases():
    ops = {case.values[0] for case in CASES}
    native = {op for op in kernels.__all__ if not op.endswith("_shape") and op not in ("host_executor", "default_variant", "fill_outputs")}
    assert ops == native


@pytest.mark.parametrize("op, build", CASES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("device", NOT_CPU, indirect=True)
def test_cuda_variant_agrees_with_the_cpu_kernel(device, rng, op, build, dtype):
    kwargs = build(rng, dtype)
    expected = devices.on_cpu(run, op, kwargs)
    actual = run(op, kwargs, device.array)
    assert len(actual) == len(expected)
    for index, (got, want) in enumerate(zip(actual, expected)):
        name = f"{op} on {device.name}, output {index}"
        assert isinstance(got, device.array_type), f"{name}: a {type(got).__name__}"
        assert got.dtype == dtype and got.shape == want.shape, f"{name}: {got.dtype} {got.shape}, the CPU gives {want.dtype} {want.shape}"
        assert_close(device.numpy(got), want, rtol=RTOL[dtype], name=name)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op, build", FIRST_CASES)
def test_the_same_call_twice_gives_bit_identical_results(device, rng, op, build, dtype):
    kwargs = build(rng, dtype)
    first = [device.numpy(a) for a in run(op, kwargs, device.array)]
    second = [device.numpy(a) for a in run(op, kwargs, device.array)]
    for index, (a, b) in enumerate(zip(first, second)):
        assert a.tobytes() == b.tobytes(), (
            f"{op} on {device.name}, output {index}: two runs differ at {int(np.sum(a != b))} elements, "
            f"by up to {np.nanmax(np.abs(a.astype(np.float64) - b)):.3e}")


@pytest.mark.parametrize("op, build", FIRST_CASES)
def test_reference_variant_on_numpy_outside_the_host_executor_raises_value_error(rng, op, build):
    kwargs = build(rng, np.dtype(np.float64))
    with pytest.raises(ValueError, match=r"variant='reference' is a variant of the CUDA kernels.*host_executor"):
        getattr(kernels, op)(**kwargs, variant="reference")
    with kernels.default_variant("reference"):  # the same through the context's default
        with pytest.raises(ValueError, match=r"variant='reference' is a variant of the CUDA kernels"):
            getattr(kernels, op)(**kwargs)
    getattr(kernels, op)(**kwargs, variant="fast")  # the CPU kernels' one variant


@pytest.mark.parametrize("op, build", FIRST_CASES)
def test_a_variant_that_does_not_exist_raises_value_error_naming_the_argument(device, rng, op, build):
    kwargs = {k: device.array(v) for k, v in build(rng, np.dtype(np.float64)).items()}
    with pytest.raises(ValueError, match=r"variant must be 'fast' or 'reference', got 'bogus'"):
        getattr(kernels, op)(**kwargs, variant="bogus")


def test_default_variant_refuses_a_variant_that_does_not_exist():
    with pytest.raises(ValueError, match=r"default_variant: variant must be 'fast' or 'reference', got 'bogus'"):
        with kernels.default_variant("bogus"):
            pass


def test_cupy_arrays_where_cuda_cannot_run_raise_runtime_error_naming_the_reason(monkeypatch):
    cupy = pytest.importorskip("cupy")
    try:
        x, kernel = cupy.ones((1, 4, 4, 2)), cupy.ones((3, 3, 2, 2))
    except Exception as error:  # CuPy imports but has no GPU to allocate on
        pytest.skip(f"CuPy cannot allocate an array here: {type(error).__name__}: {error}")
    status = convlab.cuda_available()
    if status:  # CUDA runs here: pretend it does not
        from convlab import _backend

        status = _backend.CudaAvailability(False, "pretended for this test: no usable GPU")
        monkeypatch.setattr(_backend, "_availability", status)
    with pytest.raises(RuntimeError, match=re.escape(status.reason)) as raised:
        kernels.conv2d_forward(x, kernel)
    assert "conv2d_forward" in str(raised.value)


@pytest.mark.parametrize("argument", ["strides", "dilation_rate"])
def test_a_stride_past_the_native_int32_range_is_refused_in_python_naming_it(argument):
    """2**70 used to reach the binding and come back as pybind11's signature dump."""
    from convlab import kernels

    x = np.zeros((1, 5, 5, 1), np.float32)
    w = np.zeros((3, 3, 1, 1), np.float32)
    with pytest.raises(ValueError, match=rf"conv2d_forward: {argument} must be in \[1, 2\*\*31 - 1\], got {2**70}"):
        kernels.conv2d_forward(x, w, **{argument: 2**70})
    with pytest.raises(ValueError, match=r"max_pool2d_forward: pool_size must be in \[1, 2\*\*31 - 1\]"):
        kernels.max_pool2d_forward(x, pool_size=2**70)
