#!/usr/bin/env python
"""Every kernel of convlab.kernels on small arrays, once per variant and dtype: the program
that compute-sanitizer runs on the GPU machine (benches/gpu_check.sh).

    compute-sanitizer --tool memcheck  python benches/gpu_sanitize.py   # CuPy arrays, the GPU
    compute-sanitizer --tool racecheck python benches/gpu_sanitize.py
    python benches/gpu_sanitize.py --host   # the same calls on the CPU (host executor), numpy
    python benches/gpu_sanitize.py --plan   # the CUDA kernels each call launches; runs nothing

The shapes are small (a few hundred to a few thousand elements) and chosen to reach every
code path of the launchers: partial tiles in both GEMM dimensions, more than one tile,
stride 2 with "same" padding (padding after larger than before), dilation, 1x1 convs,
depth multipliers, split-K with one and with several splits, batch-norm reductions with
one and with several row splits, more than 32 channels where kernels take channels in
chunks of 32. tests/test_gpu_check.py checks, without a GPU, that these calls launch every
kernel named in csrc/cuda/*.cuh and call every function of convlab.kernels.

On the GPU, CuPy's memory pool is switched off (every output and workspace is its own
cudaMalloc), so that memcheck sees the exact bounds of each buffer; inputs are made on the
host and copied, and outputs copied back, so no CuPy kernel runs and the sanitizers'
reports are about convlab's kernels. After every call the device is synchronized, so an
error is reported next to the call that caused it. The fast variant's results are compared
with the reference variant's; a difference, an exception or a kernel of convlab.kernels that
no call reaches makes the exit status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import time

import numpy as np

VARIANTS = ("fast", "reference")
DTYPES = (np.float32, np.float64)
TOLERANCE = {np.float32: 1e-4, np.float64: 1e-10}  # max |fast - reference| / max |reference|
NOT_KERNELS = {"conv2d_output_shape", "conv2d_transpose_output_shape", "pool2d_output_shape",
               "host_executor", "default_variant", "fill_outputs"}


class Call:
    """One call of a convlab.kernels function: make(arr) returns (args, kwargs), where
    arr(shape) is a fresh random array of the run's dtype on the run's device."""

    def __init__(self, label, op, make):
        self.label, self.op, self.make = label, op, make

    def __repr__(self):
        return f"{self.op}[{self.label}]"


def _kernels():
    from convlab import kernels

    return kernels


def conv_calls(label, x, kernel_hw, cout, strides=1, padding="valid", dilation=1, bias=True):
    """conv2d forward (with or without a bias), both gradients, and the bias gradient."""
    k = (*kernel_hw, x[3], cout)
    geo = dict(strides=strides, padding=padding, dilation_rate=dilation)
    y = lambda: _kernels().conv2d_output_shape(x, kernel_hw, cout, **geo)
    return [
        Call(label, "conv2d_forward", lambda a: ((a(x), a(k), a((cout,)) if bias else None), geo)),
        Call(label, "conv2d_backward_input", lambda a: ((a(y()), a(k), x), geo)),
        Call(label, "conv2d_backward_kernel", lambda a: ((a(x), a(y()), k), geo)),
        Call(label, "conv2d_backward_bias", lambda a: ((a(y()),), {})),
    ]


def transpose_calls(label, x, kernel_hw, cout, strides, padding, output_padding=None, bias=True):
    k = (*kernel_hw, cout, x[3])  # (kh, kw, cout, cin), as Keras
    geo = dict(strides=strides, padding=padding, output_padding=output_padding)
    y = lambda: _kernels().conv2d_transpose_output_shape(x, kernel_hw, cout, **geo)
    return [
        Call(label, "conv2d_transpose_forward", lambda a: ((a(x), a(k), a((cout,)) if bias else None), geo)),
        Call(label, "conv2d_transpose_backward_input", lambda a: ((a(y()), a(k), x), geo)),
        Call(label, "conv2d_transpose_backward_kernel", lambda a: ((a(x), a(y()), k), geo)),
    ]


def depthwise_calls(label, x, kernel_hw, multiplier, strides=1, padding="valid", dilation=1, bias=True):
    c = x[3]
    k = (*kernel_hw, c, multiplier)
    geo = dict(strides=strides, padding=padding, dilation_rate=dilation)
    y = lambda: _kernels().conv2d_output_shape(x, kernel_hw, c * multiplier, **geo)
    return [
        Call(label, "depthwise_conv2d_forward",
             lambda a: ((a(x), a(k), a((c * multiplier,)) if bias else None), geo)),
        Call(label, "depthwise_conv2d_backward_input", lambda a: ((a(y()), a(k), x), geo)),
        Call(label, "depthwise_conv2d_backward_kernel", lambda a: ((a(x), a(y()), k), geo)),
    ]


def pool_calls(label, x, pool, strides=None, padding="valid"):
    geo = dict(pool_size=pool, strides=strides, padding=padding)
    y = lambda: _kernels().pool2d_output_shape(x, **geo)
    return [
        Call(label, "max_pool2d_forward", lambda a: ((a(x),), geo)),
        Call(label, "max_pool2d_backward", lambda a: ((a(x), a(y())), geo)),
        Call(label, "avg_pool2d_forward", lambda a: ((a(x),), geo)),
        Call(label, "avg_pool2d_backward", lambda a: ((a(y()), x), geo)),
    ]


def batch_norm_calls(label, x):
    c = x[-1]
    positive = lambda a: abs(a((c,))) + 0.5  # a variance
    return [
        Call(label, "batch_norm_forward_training",
             lambda a: ((a(x), a((c,)), a((c,)), a((c,)), positive(a)), {"momentum": 0.9})),
        Call(label, "batch_norm_forward_inference",
             lambda a: ((a(x), a((c,)), a((c,)), a((c,)), positive(a)), {})),
        Call(label, "batch_norm_backward",
             lambda a: ((a(x), a(x), a((c,)), a((c,)), positive(a)), {})),
    ]


def all_calls():
    calls = []
    # conv2d: partial tiles, two tiles each way (162 rows x 70 columns: BM 128, BN 64),
    # stride 2 same (padding 0 before, 1 after), dilation, 1x1, and a GEMM so small that
    # the kernel gradient has a single split.
    calls += conv_calls("2x7x9x3->5 k3 valid +bias", (2, 7, 9, 3), (3, 3), 5)
    calls += conv_calls("2x9x8x4->6 k3 s2 same +bias", (2, 9, 8, 4), (3, 3), 6, 2, "same")
    calls += conv_calls("2x9x9x5->70 k3 same", (2, 9, 9, 5), (3, 3), 70, 1, "same", bias=False)
    calls += conv_calls("1x7x6x3->4 k3 d2 same", (1, 7, 6, 3), (3, 3), 4, 1, "same", 2)
    calls += conv_calls("2x5x5x8->7 k1", (2, 5, 5, 8), (1, 1), 7)
    calls += conv_calls("1x3x3x2->3 k2 tiny", (1, 3, 3, 2), (2, 2), 3, bias=False)
    calls += conv_calls("1x12x11x2->3 k(3,1) s(2,1) same", (1, 12, 11, 2), (3, 1), 3, (2, 1), "same")
    # the bias gradient with several row splits (>= 512 rows) and with more than 32 channels
    calls.append(Call("640x3", "conv2d_backward_bias", lambda a: ((a((2, 16, 20, 3)),), {})))
    calls.append(Call("600x40", "conv2d_backward_bias", lambda a: ((a((1, 20, 30, 40)),), {})))
    # transposed conv
    calls += transpose_calls("2x5x6x4->3 k3 s2 same +bias", (2, 5, 6, 4), (3, 3), 3, 2, "same")
    calls += transpose_calls("1x4x4x3->2 k2 s2 valid", (1, 4, 4, 3), (2, 2), 2, 2, "valid", bias=False)
    calls += transpose_calls("1x4x5x2->3 k3 s2 valid op1", (1, 4, 5, 2), (3, 3), 3, 2, "valid", 1)
    # depthwise and separable
    calls += depthwise_calls("2x7x9x4 k3 m1 same +bias", (2, 7, 9, 4), (3, 3), 1, 1, "same")
    calls += depthwise_calls("2x9x8x3 k3 m2 s2 same", (2, 9, 8, 3), (3, 3), 2, 2, "same", bias=False)
    calls += depthwise_calls("1x7x7x5 k2 d2 valid", (1, 7, 7, 5), (2, 2), 1, 1, "valid", 2)
    calls += depthwise_calls("2x6x6x40 k3 same", (2, 6, 6, 40), (3, 3), 1, 1, "same", bias=False)
    calls += depthwise_calls("2x24x24x3 k3 same", (2, 24, 24, 3), (3, 3), 1, 1, "same", bias=False)
    calls.append(Call("2x7x7x4 k3 m2 -> 5 same", "separable_conv2d_forward",
                      lambda a: ((a((2, 7, 7, 4)), a((3, 3, 4, 2)), a((1, 1, 8, 5)), a((5,))),
                                 {"padding": "same"})))
    # pooling
    calls += pool_calls("2x9x9x3 p3 s2 same", (2, 9, 9, 3), 3, 2, "same")
    calls += pool_calls("2x8x10x4 p2", (2, 8, 10, 4), 2)
    calls += pool_calls("1x7x7x2 p(3,2) s(2,1) valid", (1, 7, 7, 2), (3, 2), (2, 1), "valid")
    calls += pool_calls("1x6x6x40 p2 same", (1, 6, 6, 40), 2, None, "same")
    for label, shape in (("2x5x7x6", (2, 5, 7, 6)), ("2x4x4x33", (2, 4, 4, 33))):
        n, _, _, c = shape
        calls.append(Call(label, "global_avg_pool2d_forward", lambda a, s=shape: ((a(s),), {})))
        calls.append(Call(label, "global_avg_pool2d_backward",
                          lambda a, s=shape: ((a((s[0], s[3])), s), {})))
    # batch norm: one row split, several (> 1024 rows), more than 32 channels, rank 2
    calls += batch_norm_calls("2x5x7x6", (2, 5, 7, 6))
    calls += batch_norm_calls("2x24x24x3 (1152 rows)", (2, 24, 24, 3))
    calls += batch_norm_calls("60x40 rank 2", (60, 40))
    return calls


# ----------------------------------------------------------------------------------------
# running them


def kernel_functions():
    from convlab import kernels

    return sorted(set(kernels.__all__) - NOT_KERNELS)


def _host(value):
    return value.get() if hasattr(value, "get") and not isinstance(value, np.ndarray) else np.asarray(value)


def _outputs(result):
    return [_host(r) for r in (result if isinstance(result, tuple) else (result,))]


def _difference(fast, reference):
    worst = 0.0
    for a, b in zip(fast, reference):
        if a.shape != b.shape:
            return float("inf")
        scale = float(np.max(np.abs(b))) if b.size else 1.0
        worst = max(worst, float(np.max(np.abs(a - b))) / (scale or 1.0) if b.size else 0.0)
    return worst


def execute(mode: str, log=print) -> dict:
    """Runs every call, both variants, both dtypes. mode: "gpu" (CuPy), "host" (numpy
    through the host executor) or "plan" (launch plans only). Returns a report: calls run,
    failures, fast/reference mismatches, kernel functions no call reached, and (plan mode)
    the launches of each call as (kernel name, grid)."""
    from convlab import kernels

    if mode == "gpu":
        import cupy

        cupy.cuda.set_allocator(None)  # every buffer its own cudaMalloc: exact bounds for memcheck
        to_device, sync = cupy.asarray, cupy.cuda.Device().synchronize
        where = contextlib.nullcontext
    else:
        to_device, sync = (lambda a: a), (lambda: None)
        where = kernels.host_executor
    report = {"calls": 0, "failures": [], "mismatches": [], "missing": [], "launches": {}}
    called, fast_results = set(), {}
    started = time.perf_counter()
    with (recording_launches() if mode == "plan" else contextlib.nullcontext([])) as launched:
        for variant in VARIANTS:
            for dtype in DTYPES:
                for index, call in enumerate(all_calls()):
                    rng = np.random.default_rng(index)
                    arr = lambda shape: to_device(rng.standard_normal(shape).astype(dtype))
                    name = f"{call!r} {variant} {np.dtype(dtype).name}"
                    before = len(launched)
                    try:
                        args, kwargs = call.make(arr)
                        with where():
                            result = getattr(kernels, call.op)(*args, variant=variant, **kwargs)
                        sync()  # an asynchronous error surfaces here, next to its call
                    except Exception as error:  # noqa: BLE001 - report every failing call
                        report["failures"].append(f"{name}: {type(error).__name__}: {error}")
                        log(f"FAILED {name}: {type(error).__name__}: {error}")
                        continue
                    report["calls"] += 1
                    called.add(call.op)
                    if mode == "plan":
                        report["launches"][name] = launched[before:]
                        continue
                    key = (index, np.dtype(dtype).name)
                    if variant == "fast":
                        fast_results[key] = _outputs(result)
                    elif key in fast_results:
                        diff = _difference(fast_results[key], _outputs(result))
                        if not diff <= TOLERANCE[dtype]:
                            report["mismatches"].append(f"{name}: fast and reference differ by {diff:.2e}")
                            log(f"MISMATCH {name}: fast and reference differ by {diff:.2e}")
    report["missing"] = sorted(set(kernel_functions()) - called)
    for op in report["missing"]:
        log(f"NOT COVERED: convlab.kernels.{op} is called by no case")
    log(f"SANITIZE SCRIPT ({mode}): {report['calls']} calls ran in {time.perf_counter() - started:.1f} s, "
        f"{len(report['failures'])} failed, {len(report['mismatches'])} fast/reference mismatches, "
        f"{len(report['missing'])} kernels of convlab.kernels not covered")
    return report


def run(mode: str, log=print) -> int:
    report = execute(mode, log)
    if mode == "plan":
        names = sorted({kernel for launches in report["launches"].values() for kernel, _ in launches})
        log("launched: " + ", ".join(names))
    return 0 if not (report["failures"] or report["mismatches"] or report["missing"]) else 1


@contextlib.contextmanager
def recording_launches():
    """Inside: numpy calls in host_executor() go to convlab._cuda_host.plan, which plans
    each launch without running it; yields the list of launches, (kernel name, grid),
    filled in as calls run. (Patches convlab._backend's module reference: test tooling only.)"""
    from convlab import _backend, _cuda_host

    plan = _cuda_host.plan
    launched = []

    class Recorder:
        def __getattr__(self, op):
            function = getattr(plan, op)

            def call(*args, **kwargs):
                function(*args, **kwargs)
                launched.extend((entry["kernel"], tuple(entry["grid"]))
                                for entry in plan.launches()["launches"])

            return call

    saved = _backend._cuda_host
    _backend._cuda_host = Recorder()
    try:
        yield launched
    finally:
        _backend._cuda_host = saved


def source_kernel_names(root):
    """The kernel names the launchers in csrc/cuda/*.cuh pass to run(...): every string
    literal there that looks like an identifier with an underscore."""
    names = set()
    directory = os.path.join(root, "csrc", "cuda")
    for name in sorted(os.listdir(directory)):
        if name.endswith(".cuh") and name != "device_runner.cuh":
            with open(os.path.join(directory, name)) as f:
                names.update(re.findall(r'"([a-z][a-z0-9]*(?:_[a-z0-9]+)+)"', f.read()))
    return names


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--host", action="store_true", help="numpy arrays through the host executor (no GPU)")
    group.add_argument("--plan", action="store_true", help="only plan the launches (no GPU) and list them")
    args = parser.parse_args(argv)
    mode = "host" if args.host else "plan" if args.plan else "gpu"
    return run(mode, log=lambda text: print(text, flush=True))


if __name__ == "__main__":
    raise SystemExit(main())
