"""Which native module runs a kernel: convlab._cpu for numpy arrays, convlab._cuda for CuPy,
convlab._cuda_host for numpy arrays inside kernels.host_executor().

Importing convlab never needs a GPU. The CUDA side is optional at three levels: the
module may not have been built (no nvcc at install time), CuPy may be missing, and the
machine may have no GPU or driver. `cuda_available()` says which of these stops it.
"""

from __future__ import annotations

import contextvars
import importlib
import math
import os
import threading

import numpy as np

from . import _cpu, _cuda_host

_cuda_module = None
_cuda_import_error = None
try:  # built only when nvcc was found at install time
    _cuda_module = importlib.import_module("convlab._cuda")
except ImportError as error:  # pragma: no cover - depends on the build
    _cuda_import_error = error


class CudaAvailability:
    """Truthy when CUDA kernels can run; `.reason` says why not when they can't."""

    def __init__(self, available: bool, reason: str, devices=()):
        self.available = available
        self.reason = reason
        self.devices = list(devices)

    def __bool__(self) -> bool:
        return self.available

    def __repr__(self) -> str:
        if self.available:
            names = ", ".join(d["name"] for d in self.devices)
            return f"CudaAvailability(True, devices=[{names}])"
        return f"CudaAvailability(False, reason={self.reason!r})"


_availability = None


def cuda_available() -> CudaAvailability:
    """Whether convlab can run CUDA kernels here, and if not, why not.

    >>> import convlab
    >>> status = convlab.cuda_available()
    >>> bool(status), status.reason  # e.g. (False, 'convlab._cuda sees no GPU: ...')
    """
    global _availability
    if _availability is None:
        _availability = _probe_cuda()
    return _availability


def _probe_cuda() -> CudaAvailability:
    if _cuda_module is None:
        return CudaAvailability(
            False,
            "convlab was built without its CUDA module (nvcc was not found when it was "
            f"installed, or CONVLAB_CUDA=OFF): {_cuda_import_error}",
        )
    query = _cuda_module.query_devices()
    if query["error"]:
        return CudaAvailability(False, f"convlab._cuda sees no GPU: {query['error']}")
    try:
        importlib.import_module("cupy")
    except ImportError as error:
        return CudaAvailability(
            False,
            "a GPU is present but CuPy is not installed (pip install 'convlab[cuda]'): "
            f"{error}",
        )
    return CudaAvailability(True, "", query["devices"])


def is_cupy_array(value) -> bool:
    if type(value) is np.ndarray:  # the common case, answered without a string compare
        return False
    module = type(value).__module__
    return module.startswith("cupy") and hasattr(value, "__cuda_array_interface__")


# Settings of the calling context (convlab.kernels' context managers set them).
_host_executor = contextvars.ContextVar("convlab_host_executor", default=False)
_default_variant = contextvars.ContextVar("convlab_default_variant", default="fast")
_output_fill = contextvars.ContextVar("convlab_output_fill", default=None)

VARIANTS = ("fast", "reference")


def check_variant(variant, op: str) -> str:
    """None means the context's default ("fast" unless kernels.default_variant says)."""
    if variant is None:
        return _default_variant.get()
    if variant not in VARIANTS:
        raise ValueError(f"{op}: variant must be 'fast' or 'reference', got {variant!r}")
    return variant


def _cuda_module_for(op: str):
    status = cuda_available()
    if not status:
        raise RuntimeError(f"{op}: got a CuPy array but CUDA cannot run: {status.reason}")
    return _cuda_module


def launch(op: str, array, *args, variant=None):
    """Runs native kernel `op` on `array`'s device: the function that is looked up is the
    function that is called. numpy arrays go to convlab._cpu (or, inside
    kernels.host_executor(), to the CUDA kernels on the host executor, convlab._cuda_host);
    CuPy arrays to convlab._cuda, on the array's GPU and CuPy's current stream."""
    variant = check_variant(variant, op)
    if isinstance(array, np.ndarray):
        if _host_executor.get():
            return getattr(_cuda_host, op)(*args, variant=variant)
        if variant != "fast":
            raise ValueError(
                f"{op}: variant={variant!r} is a variant of the CUDA kernels; the CPU kernels have "
                "one ('fast'). Run the CUDA kernels on the CPU inside "
                "convlab.kernels.host_executor(), or on CuPy arrays")
        return getattr(_cpu, op)(*args, variant=variant)
    if is_cupy_array(array):
        module = _cuda_module_for(op)
        cupy = importlib.import_module("cupy")
        with array.device:
            return getattr(module, op)(*args, variant=variant,
                                       stream=cupy.cuda.get_current_stream().ptr)
    raise TypeError(
        f"{op}: expected a numpy.ndarray (or a CuPy array), got {type(array).__name__}"
    )


class _PooledBuffer:
    """One recycled block of host memory, lent to the arrays made from it.

    np.asarray(self) is an array whose `.base` is this object, and every array made from
    that one keeps it (numpy's base chain stops where the next base is not an ndarray), so
    this object lives exactly as long as the last array or view using the block; when it
    goes, the block goes back to its pool.
    """

    __slots__ = ("_block", "_pool")

    def __init__(self, block, pool):
        self._block, self._pool = block, pool

    @property
    def __array_interface__(self):
        return {"shape": (self._block.nbytes,), "typestr": "|u1", "version": 3,
                "data": (self._block.ctypes.data, False)}

    def __del__(self):
        self._pool.give(self._block)


class _OutputPool:
    """Blocks of at least `min_bytes` freed by kernel outputs, kept for the next output of
    the same size (at most `limit` bytes in all).

    A training step allocates the same large outputs every step. Blocks above glibc's
    largest mmap threshold (32 MiB) are otherwise unmapped when freed and mapped afresh,
    and the first write to each 4 KiB page of a fresh mapping costs a page fault and a
    zeroing: about 4 ms per 63 MiB activation of the mini Xception's first block.
    CONVLAB_OUTPUT_POOL_MIB sets the limit (0 turns the pool off; default 512).
    """

    def __init__(self, min_bytes, limit):
        self.min_bytes, self.limit = min_bytes, limit
        self._free = {}  # nbytes -> [block, ...]
        self._held = 0
        self._lock = threading.Lock()

    def take(self, nbytes):
        with self._lock:
            blocks = self._free.get(nbytes)
            if blocks:
                self._held -= nbytes
                return blocks.pop()
        return np.empty(nbytes, dtype=np.uint8)

    def give(self, block):
        with self._lock:
            if self._held + block.nbytes <= self.limit:
                self._free.setdefault(block.nbytes, []).append(block)
                self._held += block.nbytes

    def empty(self, shape, dtype):
        """An uninitialized array from a recycled block, or None below min_bytes."""
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes < self.min_bytes or self.limit <= 0:
            return None
        return np.asarray(_PooledBuffer(self.take(nbytes), self)).view(dtype).reshape(shape)

    def held_bytes(self):
        return self._held


_output_pool = _OutputPool(16 << 20, int(os.environ.get("CONVLAB_OUTPUT_POOL_MIB", "512")) << 20)


def empty_output(reference, shape):
    """An uninitialized output on `reference`'s device, or one filled with the value of
    kernels.fill_outputs() (tests use NaN, so an element a kernel forgets shows). Large
    host outputs come from the output pool (_OutputPool)."""
    xp = array_module(reference)
    fill = _output_fill.get()
    shape = tuple(shape)
    if fill is None:
        if xp is np:
            pooled = _output_pool.empty(shape, np.dtype(reference.dtype))
            if pooled is not None:
                return pooled
        return xp.empty(shape, dtype=reference.dtype)
    return xp.full(shape, fill, dtype=reference.dtype)


def array_module(array):
    """numpy for numpy arrays, cupy for CuPy arrays."""
    if is_cupy_array(array):
        return importlib.import_module("cupy")
    return np
