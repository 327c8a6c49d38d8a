"""The devices the kernel tests run on, and the `device` fixture's object (tests/conftest.py).

    cpu             convlab._cpu, numpy arrays (the "fast" variant, its only one)
    host-fast       the CUDA kernels on the host executor (convlab._cuda_host), numpy arrays
    host-reference  the same, the CUDA kernels' one-thread-per-output reference variant
    cuda-fast       the CUDA kernels on the GPU (convlab._cuda), CuPy arrays
    cuda-reference  the same, the reference variant

A test takes `device`, passes its inputs through `device.array(...)` and its results
through `device.numpy(...)`. For the duration of the test the fixture has entered
`kernels.fill_outputs(np.nan)` (an output element a kernel forgets to write fails),
`kernels.host_executor()` for host-*, and `kernels.default_variant(variant)` for all but
cpu, so the kernel calls in the test body need no argument saying where they run.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib

import numpy as np
import pytest

# convlab is imported where it is used: conftest.py imports this module, and a convlab
# that does not import (not built) must not stop the tests that do not need it.


class Device:
    """Where a test's kernel calls run: `name`, `kind` ("cpu", "host" or "cuda"), `variant`."""

    def __init__(self, name: str, kind: str, variant: str | None):
        self.name = name
        self.kind = kind
        self.variant = variant  # None: the CPU kernels, which have one variant

    def __repr__(self) -> str:
        return f"Device({self.name!r})"

    @property
    def is_cuda(self) -> bool:
        return self.kind == "cuda"

    @property
    def xp(self):
        """The array module of this device: numpy, or cupy for the cuda-* devices."""
        return importlib.import_module("cupy") if self.is_cuda else np

    @property
    def array_type(self) -> type:
        """The type of the arrays the kernels return here (numpy.ndarray or cupy.ndarray)."""
        return self.xp.ndarray

    @contextlib.contextmanager
    def active(self):
        """The kernels' settings of this device, for a block of code."""
        from convlab import kernels

        with contextlib.ExitStack() as stack:
            stack.enter_context(kernels.fill_outputs(np.nan))
            if self.kind == "host":
                stack.enter_context(kernels.host_executor())
            if self.variant is not None:
                stack.enter_context(kernels.default_variant(self.variant))
            yield self

    def array(self, value):
        """A numpy array moved to this device (as is for cpu and host-*; a CuPy copy for
        cuda-*). Anything that is not a numpy array is returned unchanged (None, lists, ...),
        so that malformed arguments reach the kernels as the test built them. A view that is
        not C-contiguous stays a view that is not C-contiguous, and a read-only array stays
        read-only where CuPy can say so."""
        if not self.is_cuda or not isinstance(value, np.ndarray):
            return value
        cupy = self.xp
        if value.flags.c_contiguous:
            moved = cupy.asarray(value)
        elif value.ndim >= 2 and value.flags.f_contiguous:
            moved = cupy.asfortranarray(cupy.asarray(np.ascontiguousarray(value)))
        else:  # every other element of a twice longer array: the same values, strided
            moved = cupy.repeat(cupy.asarray(np.ascontiguousarray(value)), 2, axis=-1)[..., ::2]
        if not value.flags.writeable:
            try:  # a read-only array stays read-only where CuPy has the flag
                moved.flags.writeable = False
            except AttributeError:
                pass
        return moved

    def arrays(self, *values):
        """device.array of each value, as a tuple."""
        return tuple(self.array(v) for v in values)

    def numpy(self, value):
        """A device array back as a numpy array (numpy arrays and anything else unchanged)."""
        if self.is_cuda and isinstance(value, self.xp.ndarray):
            return self.xp.asnumpy(value)
        return value

    def on_device(self, fn):
        """fn taking numpy arrays, calling fn with every numpy argument moved to the device."""

        def moved(*args, **kwargs):
            return fn(*self.arrays(*args), **{k: self.array(v) for k, v in kwargs.items()})

        return moved

    def gradcheck(self, fn, inputs, grad_fn, **kwargs):
        """convlab.testing.gradcheck of fn and grad_fn run on this device.

        gradcheck perturbs float64 numpy arrays and reads results back with `.get()` for
        CuPy; here every array it hands fn and grad_fn (the perturbed inputs and the upstream
        gradient) is moved to the device first, so the kernels run where the device says. On
        cpu and host-* the arrays are the very ones gradcheck perturbs."""
        from convlab.testing import gradcheck

        return gradcheck(self.on_device(fn), inputs, self.on_device(grad_fn), **kwargs)


DEVICES = {
    "cpu": Device("cpu", "cpu", None),
    "host-fast": Device("host-fast", "host", "fast"),
    "host-reference": Device("host-reference", "host", "reference"),
    "cuda-fast": Device("cuda-fast", "cuda", "fast"),
    "cuda-reference": Device("cuda-reference", "cuda", "reference"),
}

# The `device` fixture's params: the cuda-* ones carry the `cuda` marker (skipped, with
# cuda_available().reason, where CUDA cannot run: tests/conftest.py).
PARAMS = [
    pytest.param(name, id=name, marks=[pytest.mark.cuda] if device.is_cuda else [])
    for name, device in DEVICES.items()
]


def on_cpu(fn, *args, **kwargs):
    """fn(*args, **kwargs) in a fresh context: outside every setting the `device` fixture
    entered, so numpy arrays run on convlab._cpu (e.g. to compare a device with the CPU)."""
    return contextvars.Context().run(fn, *args, **kwargs)
