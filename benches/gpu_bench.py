#!/usr/bin/env python
"""convlab's CUDA kernels against cuDNN (through PyTorch), side by side in one run.

    python benches/gpu_bench.py --out gpu_results.md --json gpu_results.json [--budget-s 180]
    python benches/gpu_bench.py --dry-run --out /tmp/dry.md      # no GPU: the CPU, fake times
    python benches/gpu_bench.py --source-digest                  # the digest printed in results

For each kernel, variant ("fast", the default kernels, and "reference", one thread per
output) and shape: convlab's time, torch's time for the same problem (cuDNN, or torch's own
CUDA kernel where torch has no cuDNN path: max pooling), their ratio, convlab's achieved
TFLOP/s (dense convs) or GB/s (depthwise convs, pooling, batch norm) against limits measured
in the same run (a 1 GiB device-to-device copy; an 8192^3 fp32 matmul with TF32 off), and a
check of convlab's result against a float64 torch reference of the exact Keras semantics.
Then a mini-Xception training step (batch 16, 180x180x3, rmsprop, binary crossentropy) in
images/s, convlab's model API against the same architecture written in torch.

How it times (both libraries alike): synchronize; two warm-up calls (the first runs cuDNN's
autotuning, torch.backends.cudnn.benchmark = True); synchronize; N calls, each between two
CUDA events recorded on the library's current stream (both libraries use the legacy default
stream), without a host synchronization in between; synchronize; the median of the N event
intervals. N fits about --target-s seconds, between 3 and 50. L2 is not flushed between
calls. torch is timed once per kernel and shape; both variants' rows show that time.

Layouts: convlab takes NHWC CuPy arrays; torch gets the same memory as NCHW-shaped
channels_last tensors (torch.as_tensor over __cuda_array_interface__, no copy), and its conv
weights converted once, outside the timings, to channels_last OIHW.

The run survives a failing row (its error is recorded and the next row runs), stops starting
rows after --budget-s seconds (the rest are "skipped: budget"), and rewrites both outputs
after every row, so a run killed from outside keeps what it measured.

The GPU-free parts (rows, work counts, budget, writers) are in gpu_bench_core.py; this file
holds what needs torch, and CuPy and a GPU except under --dry-run, which runs every row on
the CPU (convlab's CUDA kernels through the host executor, torch on the CPU, at shrunken
shapes) with fake times, so the calls, the torch equivalents and the checks are exercised
on machines without a GPU.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import gpu_bench_core as core  # noqa: E402

import numpy as np  # noqa: E402


# ----------------------------------------------------------------------------------------
# where the run happens: the GPU, or the CPU with fake times (--dry-run)


def set_torch_flags(torch):
    """cuDNN picks its fastest algorithm per shape; no TF32 anywhere (fp32 against fp32)."""
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")


class Gpu:
    """CuPy arrays for convlab, CUDA tensors for torch, CUDA-event timings."""

    fake = False
    torch_device = "cuda"

    def __init__(self, torch):
        import cupy

        self.cupy, self.torch, self.xp = cupy, torch, cupy
        if not torch.cuda.is_available():
            raise RuntimeError("torch sees no CUDA device")
        set_torch_flags(torch)

    def ours(self):
        return contextlib.nullcontext()

    def to_array(self, tensor):
        return self.cupy.asarray(tensor)  # a view of torch's memory (__cuda_array_interface__)

    def sync(self):
        self.torch.cuda.synchronize()  # the whole device: CuPy's work as well as torch's

    def _events(self, library):
        if library == "convlab":
            make = self.cupy.cuda.Event
            elapsed = self.cupy.cuda.get_elapsed_time  # ms
        else:
            make = lambda: self.torch.cuda.Event(enable_timing=True)
            elapsed = lambda start, end: start.elapsed_time(end)  # ms
        return make, elapsed

    def time(self, fn, library, target_s, low=3, high=50):
        """(median ms, repeats, the last warm-up's result)."""
        make, elapsed = self._events(library)
        self.sync()
        fn()  # cuDNN autotunes here; CuPy and torch fill their memory pools
        self.sync()
        start = time.perf_counter()
        result = fn()
        self.sync()
        repeats = core.clamp_repeats(time.perf_counter() - start, target_s, low, high)
        events = [(make(), make()) for _ in range(repeats)]
        for begin, end in events:
            begin.record()
            fn()
            end.record()
        self.sync()
        return core.median(elapsed(b, e) for b, e in events), repeats, result

    def time_steps(self, step, target_s, low=3, high=10):
        """Whole training steps by the wall clock, synchronized around each (a step ends
        with loss.item() on both sides anyway): (median ms, steps)."""
        for _ in range(2):
            step()
        self.sync()
        times = []
        while len(times) < high and (len(times) < low or sum(times) < target_s):
            start = time.perf_counter()
            step()
            self.sync()
            times.append(time.perf_counter() - start)
        return 1e3 * core.median(times), len(times)


class DryRun:
    """numpy arrays through convlab's CUDA kernels on the host executor, torch on the CPU,
    every call made once and its time made up (core.fake_ms)."""

    fake = True
    torch_device = "cpu"

    def __init__(self, torch):
        self.torch, self.xp = torch, np
        set_torch_flags(torch)  # no effect on the CPU; keeps the header's statement true

    def ours(self):
        from convlab import kernels

        return kernels.host_executor()

    def to_array(self, tensor):
        return tensor.numpy()

    def sync(self):
        pass

    def time(self, fn, library, target_s, low=3, high=50):
        return None, 1, fn()

    def time_steps(self, step, target_s, low=3, high=10):
        step()
        return None, 1


# ----------------------------------------------------------------------------------------
# data, and the calls on each side


def make_data(case: core.Case, torch, device="cpu", to_array=None, seed=0):
    """The arrays a case's rows need, in convlab's layouts: made by torch on `device`
    (so that no CuPy kernel has to be compiled on the GPU machine), then handed over
    without a copy: numpy through .numpy(), CuPy through __cuda_array_interface__."""
    to_array = to_array or (lambda t: t.numpy())
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    normal = lambda shape, scale=1.0: torch.randn(shape, generator=generator, device=device) * scale
    t = {"x": normal(case.x_shape), "gy": normal(case.y_shape)}
    if case.kernel_shape:
        fan_in = case.kernel * case.kernel * (case.c if case.family != "depthwise_conv2d" else 1)
        t["w"] = normal(case.kernel_shape, 1.0 / np.sqrt(fan_in))
    if case.family == "batch_norm":
        c = case.c
        t["gamma"] = 1 + normal((c,), 0.1)
        t["beta"] = normal((c,), 0.1)
        t["moving_mean"] = torch.zeros(c, device=device)
        t["moving_variance"] = torch.ones(c, device=device)
        rows = t["x"].reshape(-1, c)
        t["batch_mean"] = rows.mean(dim=0)
        t["batch_variance"] = rows.var(dim=0, correction=0)  # biased, as the training forward returns it
    return {name: to_array(tensor.contiguous()) for name, tensor in t.items()}


def convlab_call(kernel: str, case: core.Case, d: dict, variant: str):
    """A zero-argument function calling kernel `kernel` of convlab.kernels on the case."""
    from convlab import kernels

    s, p, k = case.stride, case.padding, case.kernel
    f = getattr(kernels, kernel)
    calls = {
        "conv2d_forward": lambda: f(d["x"], d["w"], None, s, p, variant=variant),
        "conv2d_backward_input": lambda: f(d["gy"], d["w"], d["x"].shape, s, p, variant=variant),
        "conv2d_backward_kernel": lambda: f(d["x"], d["gy"], d["w"].shape, s, p, variant=variant),
        "max_pool2d_forward": lambda: f(d["x"], k, s, p, variant=variant),
        "max_pool2d_backward": lambda: f(d["x"], d["gy"], k, s, p, variant=variant),
        "batch_norm_forward_training": lambda: f(
            d["x"], d["gamma"], d["beta"], d["moving_mean"], d["moving_variance"], variant=variant),
        "batch_norm_backward": lambda: f(
            d["gy"], d["x"], d["gamma"], d["batch_mean"], d["batch_variance"], variant=variant),
    }
    # The transposed and depthwise convs take the same arguments as conv2d's passes.
    for family in ("conv2d_transpose", "depthwise_conv2d"):
        for suffix in ("forward", "backward_input", "backward_kernel"):
            calls[f"{family}_{suffix}"] = calls[f"conv2d_{suffix}"]
    return calls[kernel]


def torch_view(torch, device, array):
    """The same memory as a torch tensor, no copy: numpy through from_numpy, CuPy through
    __cuda_array_interface__ (DLPack where that fails)."""
    if device == "cpu":
        return torch.from_numpy(array)
    try:
        return torch.as_tensor(array, device="cuda")
    except Exception:  # noqa: BLE001 - older torch: DLPack instead
        return torch.from_dlpack(array)


def nchw(t):
    """An NHWC tensor as torch's NCHW shape with channels_last memory (a view)."""
    return t.permute(0, 3, 1, 2)


def torch_max_pool_same(torch, x, k, s):
    """TensorFlow's "same" max pooling of an NCHW tensor in torch. When nothing is padded
    before (the benchmark's 90x90), ceil_mode=True is exact and copies nothing: the last
    window overhangs the bottom/right edge and torch ignores the cells outside. Otherwise
    F.pad with -inf (a copy), then max_pool2d."""
    F = torch.nn.functional
    (_, top, bottom), (_, left, right) = (core.same_padding(x.shape[2], k, s),
                                          core.same_padding(x.shape[3], k, s))
    if top == 0 and left == 0:
        return F.max_pool2d(x, k, s, 0, 1, ceil_mode=True)
    return F.max_pool2d(F.pad(x, (left, right, top, bottom), value=float("-inf")), k, s)


class TorchSide:
    """The torch equivalents of one case: `timed(kernel)` is what is timed against convlab,
    `reference(kernel)` the float64 result of the exact Keras semantics (F.pad for
    TensorFlow's "same", autograd for the gradients) in convlab's layout."""

    def __init__(self, torch, device: str, case: core.Case, d: dict):
        self.torch, self.F, self.device, self.case, self.d = torch, torch.nn.functional, device, case, d
        self.x = nchw(self.tensor(d["x"]))
        self.gy = nchw(self.tensor(d["gy"]))
        k, s = case.kernel, case.stride
        if case.family != "batch_norm":
            if case.family == "conv2d_transpose":
                oh, ow = case.out_hw()
                _, self.top, self.bottom = core.conv_axis(oh, k, s, case.padding)
                _, self.left, self.right = core.conv_axis(ow, k, s, case.padding)
            else:
                _, self.top, self.bottom = core.conv_axis(case.h, k, s, case.padding)
                _, self.left, self.right = core.conv_axis(case.w, k, s, case.padding)

    # -- layouts

    def tensor(self, array):
        return torch_view(self.torch, self.device, array)

    def conv_weight(self):
        """Keras (kh, kw, cin, cout) -> torch conv2d (cout, cin, kh, kw); depthwise
        (kh, kw, c, m) -> (c*m, 1, kh, kw); transposed (kh, kw, cout, cin) -> torch
        conv_transpose2d (cin, cout, kh, kw). Copied once, channels_last."""
        w = self.tensor(self.d["w"])
        fam = self.case.family
        if fam == "conv2d":
            w = w.permute(3, 2, 0, 1)
        elif fam == "depthwise_conv2d":
            kh, kw, c, m = w.shape
            w = w.permute(2, 3, 0, 1).reshape(c * m, 1, kh, kw)
        else:
            w = w.permute(3, 2, 0, 1)
        return w.contiguous(memory_format=self.torch.channels_last)

    def to_ours(self, t, what):
        """A torch result back in convlab's layout (a view)."""
        fam = self.case.family
        if what == "kernel":
            if fam == "depthwise_conv2d":
                kh, kw = t.shape[2:]
                c, m = self.case.c, self.case.filters
                return t.permute(2, 3, 0, 1).reshape(kh, kw, c, m)
            return t.permute(2, 3, 1, 0)  # (o, i, kh, kw) -> (kh, kw, i, o); transposed alike
        if t.dim() == 4:
            return t.permute(0, 2, 3, 1)
        return t

    @property
    def symmetric(self):
        return self.top == self.bottom and self.left == self.right

    # -- timed calls: (function, outputs in convlab's layout or None, what torch runs)

    def timed(self, kernel: str):
        fam = self.case.family
        if fam in ("conv2d", "depthwise_conv2d"):
            return self._timed_conv(kernel)
        if fam == "conv2d_transpose":
            return self._timed_transpose(kernel)
        if fam == "max_pool2d":
            return self._timed_pool(kernel)
        return self._timed_batch_norm(kernel)

    def _timed_conv(self, kernel):
        torch, F, s = self.torch, self.F, self.case.stride
        groups = self.case.c if self.case.family == "depthwise_conv2d" else 1
        w = self.conv_weight()
        x = self.x
        if not self.symmetric:  # none of the benchmark's shapes: TF pads more after
            x = F.pad(self.x, (self.left, self.right, self.top, self.bottom)).contiguous(
                memory_format=torch.channels_last)
        pad = [self.top, self.left] if self.symmetric else [0, 0]
        args = (None, [s, s], pad, [1, 1], False, [0, 0], groups)
        aten = torch.ops.aten
        name = "torch CPU" if self.device == "cpu" else (
            "cuDNN or torch's depthwise kernel" if groups > 1 else "cuDNN")
        if kernel.endswith("forward"):
            return (lambda: F.conv2d(x, w, None, s, pad, 1, groups),
                    lambda out: [self.to_ours(out, "y")], f"F.conv2d(groups={groups}) [{name}]")
        if kernel.endswith("backward_input"):
            crop = self._crop_input
            return (lambda: aten.convolution_backward(self.gy, x, w, *args, [True, False, False])[0],
                    lambda out: [self.to_ours(crop(out), "y")],
                    f"aten.convolution_backward(input) [{name}]")
        return (lambda: aten.convolution_backward(self.gy, x, w, *args, [False, True, False])[1],
                lambda out: [self.to_ours(out, "kernel")],
                f"aten.convolution_backward(weight) [{name}]")

    def _crop_input(self, grad_x):
        if self.symmetric:
            return grad_x
        return grad_x[:, :, self.top:self.top + self.case.h, self.left:self.left + self.case.w]

    def _transpose_padding(self):
        """torch's (padding, output_padding) giving Keras' output size with the same work;
        torch pads symmetrically, so its output is Keras' shifted by up to a pixel."""
        k, s, h = self.case.kernel, self.case.stride, self.case.h
        oh = self.case.out_hw()[0]
        p = max(-(-(k - s) // 2), 0) if self.case.padding == "same" else 0
        return p, oh - ((h - 1) * s - 2 * p + k)

    def _timed_transpose(self, kernel):
        torch, F, s = self.torch, self.F, self.case.stride
        w = self.conv_weight()
        p, op = self._transpose_padding()
        args = (None, [s, s], [p, p], [1, 1], True, [op, op], 1)
        aten = torch.ops.aten
        note = f"torch padding={p}, output_padding={op}: Keras' sizes and work, shifted a pixel"
        if kernel.endswith("forward"):
            return (lambda: F.conv_transpose2d(self.x, w, None, s, p, op), None,
                    f"F.conv_transpose2d [cudnn] ({note})")
        if kernel.endswith("backward_input"):
            return (lambda: aten.convolution_backward(self.gy, self.x, w, *args, [True, False, False])[0],
                    None, f"aten.convolution_backward(input, transposed) ({note})")
        return (lambda: aten.convolution_backward(self.gy, self.x, w, *args, [False, True, False])[1],
                None, f"aten.convolution_backward(weight, transposed) ({note})")

    def max_pool_same(self, x):
        return torch_max_pool_same(self.torch, x, self.case.kernel, self.case.stride)

    def _timed_pool(self, kernel):
        torch, F = self.torch, self.F
        k, s, h, w = self.case.kernel, self.case.stride, self.case.h, self.case.w
        impl = "torch CPU" if self.device == "cpu" else "torch's CUDA kernel, no cuDNN"
        exact_without_padding = self.top == 0 and self.left == 0
        how = "ceil_mode=True" if exact_without_padding else "F.pad(-inf)"
        if kernel.endswith("forward"):
            return (lambda: self.max_pool_same(self.x), lambda out: [self.to_ours(out, "y")],
                    f"F.max_pool2d({how}) [{impl}]")
        # The backward takes the argmax that torch's forward saved (convlab recomputes it).
        if exact_without_padding:
            x, padding = self.x, (0, 0, 0, 0)
        else:
            x = F.pad(self.x, (self.left, self.right, self.top, self.bottom), value=float("-inf"))
            padding = (self.left, self.right, self.top, self.bottom)
        _, indices = F.max_pool2d(x, k, s, 0, 1, ceil_mode=exact_without_padding, return_indices=True)
        crop = lambda g: g[:, :, padding[2]:padding[2] + h, padding[0]:padding[0] + w]
        return (lambda: torch.ops.aten.max_pool2d_with_indices_backward(
                    self.gy, x, [k, k], [s, s], [0, 0], [1, 1], exact_without_padding, indices),
                lambda out: [self.to_ours(crop(out), "y")],
                f"aten.max_pool2d_with_indices_backward({how}, torch's saved argmax) [{impl}]")

    def _timed_batch_norm(self, kernel, eps=1e-3):
        """cuDNN's batch norm (torch.ops.aten.cudnn_batch_norm*) on the GPU when torch has
        it, else torch's own native_batch_norm*."""
        torch, aten = self.torch, self.torch.ops.aten
        t = lambda name: self.tensor(self.d[name]).clone()
        gamma, beta, mean, var = t("gamma"), t("beta"), t("moving_mean"), t("moving_variance")
        momentum = 0.01  # torch's momentum = 1 - Keras' 0.99
        if self.device == "cuda":
            try:
                y, save_mean, save_var, reserve = aten.cudnn_batch_norm(
                    self.x, gamma, beta, mean, var, True, momentum, eps)
                if kernel == "batch_norm_forward_training":
                    return (lambda: aten.cudnn_batch_norm(self.x, gamma, beta, mean, var, True, momentum, eps),
                            lambda out: [self.to_ours(out[0], "y")], "aten.cudnn_batch_norm [cudnn]")
                return (lambda: aten.cudnn_batch_norm_backward(
                            self.x, self.gy.contiguous(memory_format=torch.channels_last), gamma, mean, var,
                            save_mean, save_var, eps, reserve),
                        lambda out: [self.to_ours(out[0], "y"), out[1], out[2]],
                        "aten.cudnn_batch_norm_backward [cudnn]")
            except Exception as error:  # noqa: BLE001 - fall back to torch's own kernels
                why = f" [torch's kernel: cudnn_batch_norm failed: {core.one_line(error, 80)}]"
        else:
            why = " [torch CPU]"
        y, save_mean, save_invstd = aten.native_batch_norm(self.x, gamma, beta, mean, var, True, momentum, eps)
        if kernel == "batch_norm_forward_training":
            return (lambda: aten.native_batch_norm(self.x, gamma, beta, mean, var, True, momentum, eps),
                    lambda out: [self.to_ours(out[0], "y")], "aten.native_batch_norm" + why)
        return (lambda: aten.native_batch_norm_backward(
                    self.gy, self.x, gamma, mean, var, save_mean, save_invstd, True, eps, [True, True, True]),
                lambda out: [self.to_ours(out[0], "y"), out[1], out[2]], "aten.native_batch_norm_backward" + why)

    # -- the float64 reference

    def reference(self, kernel: str):
        """The exact Keras result in float64, in convlab's layout (a list of tensors)."""
        torch, F = self.torch, self.F
        case, s = self.case, self.case.stride
        x = self.x.double().requires_grad_()
        gy = self.gy.double()
        with torch.enable_grad():
            if case.family == "batch_norm":
                gamma = self.tensor(self.d["gamma"]).double().requires_grad_()
                beta = self.tensor(self.d["beta"]).double().requires_grad_()
                y = F.batch_norm(x, None, None, gamma, beta, training=True, eps=1e-3)
                if kernel == "batch_norm_forward_training":
                    return [self.to_ours(y, "y")]
                gx, gg, gb = torch.autograd.grad(y, (x, gamma, beta), gy)
                return [self.to_ours(gx, "y"), gg, gb]
            if case.family == "max_pool2d":
                padded = F.pad(x, (self.left, self.right, self.top, self.bottom), value=float("-inf"))
                y = F.max_pool2d(padded, case.kernel, s)
                if kernel.endswith("forward"):
                    return [self.to_ours(y, "y")]
                return [self.to_ours(torch.autograd.grad(y, x, gy)[0], "y")]
            w = self.conv_weight().double().requires_grad_()
            if case.family == "conv2d_transpose":
                full = F.conv_transpose2d(x, w, None, s)  # no padding: (h - 1) * s + k
                oh, ow = case.out_hw()
                # Keras' output is the window [top, top + oh) of the full one (negative pads crop).
                y = F.pad(full, (-self.left, ow + self.left - full.shape[3],
                                 -self.top, oh + self.top - full.shape[2]))
            else:
                groups = case.c if case.family == "depthwise_conv2d" else 1
                padded = F.pad(x, (self.left, self.right, self.top, self.bottom))
                y = F.conv2d(padded, w, None, s, 0, 1, groups)
            if kernel.endswith("forward"):
                return [self.to_ours(y, "y")]
            if kernel.endswith("backward_input"):
                return [self.to_ours(torch.autograd.grad(y, x, gy)[0], "y")]
            return [self.to_ours(torch.autograd.grad(y, w, gy)[0], "kernel")]


def relative_error(torch, ours, reference, to_tensor):
    """max over outputs of max|ours - ref| / max|ref| (float64; NaN if a shape differs)."""
    worst = 0.0
    for a, ref in zip(ours, reference):
        a = to_tensor(a) if not isinstance(a, torch.Tensor) else a
        if tuple(a.shape) != tuple(ref.shape):
            return float("nan")
        ref = ref.detach().double()
        scale = ref.abs().max().item() or 1.0
        worst = max(worst, (a.double() - ref).abs().max().item() / scale)
    return worst


def as_outputs(result):
    return list(result) if isinstance(result, (tuple, list)) else [result]


# ----------------------------------------------------------------------------------------
# the mini-Xception in torch: the same layers as convlab.applications.mini_xception


def torch_mini_xception(torch, block_sizes=(32, 64, 128, 256, 512), in_channels=3):
    """Rescaling(1/255), Conv 5x5 (32, no bias, valid); per block: BN, ReLU, separable
    conv 3x3 same (depthwise + pointwise, no bias), BN, ReLU, separable conv, max pool 3/2
    same, plus a 1x1/2 same conv (no bias) of the block's input; GAP, Dropout(0.5),
    Dense(1) (the sigmoid is in the loss). BN as Keras: momentum 0.99 (torch 0.01), eps 1e-3."""
    nn, F = torch.nn, torch.nn.functional

    class SeparableConv(nn.Module):
        def __init__(self, cin, cout):
            super().__init__()
            self.depthwise = nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False)
            self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)

        def forward(self, x):
            return self.pointwise(self.depthwise(x))

    class Block(nn.Module):
        def __init__(self, cin, cout):
            super().__init__()
            self.bn1 = nn.BatchNorm2d(cin, eps=1e-3, momentum=0.01)
            self.sep1 = SeparableConv(cin, cout)
            self.bn2 = nn.BatchNorm2d(cout, eps=1e-3, momentum=0.01)
            self.sep2 = SeparableConv(cout, cout)
            self.residual = nn.Conv2d(cin, cout, 1, stride=2, bias=False)

        def forward(self, x):
            y = self.sep1(F.relu(self.bn1(x)))
            y = self.sep2(F.relu(self.bn2(y)))
            return torch_max_pool_same(torch, y, 3, 2) + self.residual(x)

    class MiniXception(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(in_channels, 32, 5, bias=False)
            sizes = [32] + list(block_sizes)
            self.blocks = nn.Sequential(*[Block(a, b) for a, b in zip(sizes, sizes[1:])])
            self.dropout = nn.Dropout(0.5)
            self.dense = nn.Linear(sizes[-1], 1)

        def forward(self, x):
            x = self.blocks(self.conv(x * (1.0 / 255)))
            return self.dense(self.dropout(x.mean(dim=(2, 3))))

    return MiniXception()


def measure_model(row, run, torch, target_s):
    """Training steps of the mini-Xception, torch then convlab: ms per step and images/s."""
    import convlab
    from convlab import applications

    case, xp = row.case, run.xp
    block_sizes = (32, 64, 128, 256, 512) if not run.fake else (4, 8)
    x = xp.asarray(np.random.default_rng(0).uniform(0, 255, case.x_shape).astype(np.float32))
    y = xp.asarray((np.arange(case.n) % 2).reshape(-1, 1).astype(np.float32))

    # convlab
    convlab.utils.set_seed(0)
    model = applications.mini_xception(input_shape=(case.h, case.w, 3), block_sizes=block_sizes)
    if not run.fake:
        model.to("cuda")
    model.compile("rmsprop", "binary_crossentropy")
    ours_params = sum(int(v.data.size) for v in model.trainable_weights)
    row.extra["convlab_trainable_params"] = ours_params

    # torch
    torch.manual_seed(0)
    net = torch_mini_xception(torch, block_sizes).to(run.torch_device, memory_format=torch.channels_last)
    theirs_params = sum(p.numel() for p in net.parameters())
    row.extra["torch_params"] = theirs_params
    optimizer = torch.optim.RMSprop(net.parameters(), lr=1e-3, alpha=0.9, eps=1e-7)
    xt = nchw(torch_view(torch, run.torch_device, x))
    yt = torch_view(torch, run.torch_device, y)

    def torch_step():
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.binary_cross_entropy(torch.sigmoid(net(xt)), yt)
        loss.backward()
        optimizer.step()
        return loss.item()

    note = (f"batch {case.n}, rmsprop, binary crossentropy; trainable parameters convlab "
            f"{ours_params:,} / torch {theirs_params:,}" + ("" if ours_params == theirs_params else " MISMATCH"))
    row.note = note
    row.torch_op = "nn.Module mini-Xception (channels_last), loss.item() per step like train_on_batch"
    try:
        ms, steps = run.time_steps(torch_step, target_s)
        row.cudnn_ms = core.fake_ms(row, "torch") if run.fake else ms
        row.extra["torch_images_per_s"] = case.n / (row.cudnn_ms * 1e-3)
    except Exception as error:  # noqa: BLE001
        row.torch_error = core.one_line(error)
    ms, steps = run.time_steps(lambda: model.train_on_batch(x, y), target_s)
    row.convlab_ms = core.fake_ms(row, "convlab") if run.fake else ms
    row.repeats = steps
    row.extra["convlab_images_per_s"] = case.n / (row.convlab_ms * 1e-3)


# ----------------------------------------------------------------------------------------
# the run


class Bench:
    def __init__(self, run, torch, target_s, log=print):
        self.run, self.torch, self.target_s, self.log = run, torch, target_s, log
        self.data = {}  # case -> arrays
        self.torch_sides = {}  # case -> TorchSide
        self.torch_results = {}  # (kernel, case) -> (ms, repeats, error, op, cudnn_check)
        self.references = {}  # (kernel, case) -> float64 reference outputs

    def case_data(self, case):
        if case not in self.data:
            self.data[case] = make_data(case, self.torch, self.run.torch_device, self.run.to_array)
        return self.data[case]

    def torch_side(self, case):
        if case not in self.torch_sides:
            self.torch_sides[case] = TorchSide(self.torch, self.run.torch_device, case, self.case_data(case))
        return self.torch_sides[case]

    def reference(self, row):
        if row.torch_key not in self.references:
            self.references[row.torch_key] = self.torch_side(row.case).reference(row.kernel)
        return self.references[row.torch_key]

    def measure(self, row: core.Row):
        if row.kernel == core.MODEL_KERNEL:
            return measure_model(row, self.run, self.torch, 4 * self.target_s)
        torch, run = self.torch, self.run
        side = self.torch_side(row.case)
        with torch.no_grad():
            if row.torch_key not in self.torch_results:
                self.torch_results[row.torch_key] = self._time_torch(row, side)
            ms, _, row.torch_error, row.torch_op, row.cudnn_check = self.torch_results[row.torch_key]
            row.cudnn_ms = ms
            call = convlab_call(row.kernel, row.case, self.case_data(row.case), row.variant)
            with run.ours():
                ms, row.repeats, result = run.time(call, "convlab", self.target_s)
            row.convlab_ms = core.fake_ms(row, "convlab") if run.fake else ms
            row.check = relative_error(torch, as_outputs(result), self.reference(row), side.tensor)
            del result

    def _time_torch(self, row, side):
        try:
            fn, to_ours, op = side.timed(row.kernel)
            ms, repeats, result = self.run.time(fn, "torch", self.target_s)
            if self.run.fake:
                ms = core.fake_ms(row, "torch")
            cudnn_check = None
            if to_ours is not None:
                cudnn_check = relative_error(self.torch, to_ours(result), self.reference(row), side.tensor)
            return ms, repeats, None, op, cudnn_check
        except Exception as error:  # noqa: BLE001 - recorded in the row, convlab still runs
            return None, None, core.one_line(error), None, None


def measure_limits(run, torch, target_s):
    """The device-to-device copy bandwidth (read + write of 1 GiB) and the fp32 matmul
    throughput (8192^3, TF32 off), both timed like the kernels."""
    if run.fake:
        return dict(core.FAKE_LIMITS)
    limits = {}
    try:
        n = 1 << 28  # 2^28 floats = 1 GiB
        src = torch.empty(n, device="cuda").uniform_()
        dst = torch.empty_like(src)
        ms, _, _ = run.time(lambda: dst.copy_(src), "torch", target_s, low=5)
        limits.update(gbps=2 * 4 * n / (ms * 1e-3) / 1e9, copy_bytes=4 * n, copy_ms=ms)
        del src, dst
        m = 8192
        a = torch.randn(m, m, device="cuda")
        b = torch.randn(m, m, device="cuda")
        ms, _, _ = run.time(lambda: torch.mm(a, b), "torch", target_s, low=5)
        limits.update(tflops=2 * m ** 3 / (ms * 1e-3) / 1e12, matmul_n=m, matmul_ms=ms,
                      matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32)
        del a, b
        torch.cuda.empty_cache()
    except Exception as error:  # noqa: BLE001
        limits["error"] = core.one_line(error)
    return limits


def git_commit():
    if os.environ.get("CONVLAB_COMMIT"):
        return os.environ["CONVLAB_COMMIT"]
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
    except Exception:  # noqa: BLE001 - the GPU machine's copy of the tree has no .git
        return "unknown (set CONVLAB_COMMIT; the source digest identifies the tree)"


def describe_run(run, torch, batch, target_s):
    meta = {"dry_run": run.fake, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "commit": git_commit(), "source_digest": core.source_digest(ROOT), "batch": batch}
    versions = [f"python {platform.python_version()}", f"torch {torch.__version__}"]
    try:
        import convlab

        versions.append(f"convlab {convlab.__version__} ({os.path.dirname(convlab.__file__)})")
    except Exception as error:  # noqa: BLE001
        versions.append(f"convlab does not import: {core.one_line(error)}")
    if run.fake:
        meta["device"] = f"DRY RUN on the CPU ({platform.machine()}), convlab's CUDA kernels on the host executor"
    else:
        cupy = run.cupy
        props = torch.cuda.get_device_properties(0)
        meta["device"] = f"{props.name} ({props.total_memory / 2**30:.0f} GiB, {props.multi_processor_count} SMs)"
        versions += [f"cupy {cupy.__version__}", f"CUDA (torch) {torch.version.cuda}",
                     f"cuDNN {torch.backends.cudnn.version()}",
                     f"CUDA runtime (cupy) {cupy.cuda.runtime.runtimeGetVersion()}",
                     f"driver {cupy.cuda.runtime.driverGetVersion()}"]
        meta["streams"] = (f"cupy current stream {cupy.cuda.get_current_stream().ptr}, "
                           f"torch current stream {torch.cuda.current_stream().cuda_stream} (0: legacy default)")
    meta["versions"] = ", ".join(versions)
    tf32_off = not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    meta["tf32"] = (("TF32 off" if tf32_off else "TF32 NOT OFF") + ": torch.backends.cuda.matmul.allow_tf32 = "
                    f"{torch.backends.cuda.matmul.allow_tf32}, torch.backends.cudnn.allow_tf32 = "
                    f"{torch.backends.cudnn.allow_tf32}; torch.backends.cudnn.benchmark = "
                    f"{torch.backends.cudnn.benchmark}; convlab's kernels are fp32 FMA")
    meta["timing"] = ("per measurement: sync, 2 warm-up calls (cuDNN autotunes in the first), sync, N calls "
                      "each between CUDA events on the library's current stream with no host sync between "
                      f"them, sync; median of N (N fits ~{target_s:g} s, 3..50); L2 not flushed; torch timed "
                      "once per kernel and shape; the model row: whole train steps by the wall clock, "
                      "median of 3..10")
    arrays = "numpy arrays (host executor)" if run.fake else "CuPy arrays"
    meta["layout"] = (f"batch {batch}, float32; convlab NHWC {arrays}; torch the same memory as channels_last "
                      "NCHW views, weights channels_last OIHW")
    meta["counts"] = ("TFLOP/s from multiply-adds whose tap is inside the input (x2); GB/s from compulsory "
                      "traffic (each tensor read or written once); depthwise convs are held against bandwidth")
    meta["torch_ops"] = ("convs: F.conv2d / F.conv_transpose2d / aten.convolution_backward (cuDNN); "
                         "depthwise: the same with groups=C (cuDNN or torch's depthwise kernel, torch's choice); "
                         "max pool: torch's own CUDA kernel (PyTorch has no cuDNN pooling), TF 'same' emulated "
                         "with ceil_mode=True (exact when nothing pads before) or F.pad(-inf); batch norm: "
                         "aten.cudnn_batch_norm(_backward), falling back to native_batch_norm (see each row's "
                         "torch_op in the JSON)")
    return meta


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="gpu_results.md", help="markdown table (rewritten after every row)")
    parser.add_argument("--json", default="gpu_results.json", help="the same rows as JSON")
    parser.add_argument("--budget-s", type=float, default=180.0,
                        help="start no row after this many seconds (the rest: 'skipped: budget')")
    parser.add_argument("--target-s", type=float, default=0.25, help="timed seconds per measurement (about)")
    parser.add_argument("--batch", type=int, default=core.BATCH, help="batch of the kernel rows (the model: 16)")
    parser.add_argument("--kernels", default="", help="comma-separated kernel-name prefixes to keep")
    parser.add_argument("--variants", default="fast,reference", help="comma-separated: fast, reference")
    parser.add_argument("--no-model", action="store_true", help="leave out the mini-Xception row")
    parser.add_argument("--dry-run", action="store_true",
                        help="no GPU: numpy through the host executor, torch on the CPU, shrunken shapes, FAKE times")
    parser.add_argument("--source-digest", action="store_true", help="print the source digest and exit")
    parser.add_argument("--summarize", metavar="JSON", help="print a results JSON as a narrow text table and exit")
    args = parser.parse_args(argv)
    if args.budget_s <= 0 or args.target_s <= 0 or args.batch < 1:
        parser.error("--budget-s, --target-s and --batch must be positive")
    variants = [v for v in args.variants.split(",") if v]
    unknown = set(variants) - set(core.VARIANTS)
    if unknown:
        parser.error(f"--variants: unknown {sorted(unknown)}; known {list(core.VARIANTS)}")
    args.variants = variants
    args.kernels = [k for k in args.kernels.split(",") if k]
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.source_digest:
        print(core.source_digest(ROOT))
        return 0
    if args.summarize:
        import json

        with open(args.summarize) as f:
            print(core.format_compact(json.load(f)), end="")
        return 0
    budget = core.Budget(args.budget_s)
    rows = core.select_rows(core.define_rows(args.batch), args.kernels, args.variants, not args.no_model)
    import torch

    try:
        run = DryRun(torch) if args.dry_run else Gpu(torch)
    except Exception as error:  # noqa: BLE001 - say why in the results, not only in a traceback
        text = f"gpu_bench could not start: {core.one_line(error, 1000)}"
        print(text, flush=True)
        for path in (args.out, args.json):
            if path:
                core.write_atomic(path, text + "\n")
        return 1
    if run.fake:
        rows = [core.Row(r.kernel, r.variant, r.case.shrunk() if r.kernel != core.MODEL_KERNEL else
                         core.Case("model", 2, 20, 20, 3, 1, 0, 1, "")) for r in rows]
        torch.set_num_threads(1)
    meta = describe_run(run, torch, args.batch if not run.fake else 2, args.target_s)
    limits = {}
    core.write_outputs(args.out, args.json, meta, limits, rows)
    print(f"gpu_bench: {len(rows)} rows on {meta['device']}, budget {args.budget_s:g} s", flush=True)
    limits = measure_limits(run, torch, args.target_s)
    print(f"gpu_bench: limits {limits}", flush=True)
    bench = Bench(run, torch, args.target_s, log=lambda text: print(text, flush=True))
    core.run_rows(rows, bench.measure, budget,
                  on_progress=lambda rows: core.write_outputs(args.out, args.json, meta, limits, rows),
                  log=lambda text: print(text, flush=True))
    print(f"BENCH SUMMARY: {core.summary_line(rows)}" + (" (DRY RUN, FAKE TIMES)" if run.fake else ""),
          flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
