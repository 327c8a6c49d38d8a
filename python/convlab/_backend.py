"""Which native module runs a kernel: convlab._cpu for numpy arrays, convlab._cuda for CuPy.

Importing convlab never needs a GPU. The CUDA side is optional at three levels: the
module may not have been built (no nvcc at install time), CuPy may be missing, and the
machine may have no GPU or driver. `cuda_available()` says which of these stops it.
"""

from __future__ import annotations

import importlib

import numpy as np

from . import _cpu

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
    module = type(value).__module__
    return module.startswith("cupy") and hasattr(value, "__cuda_array_interface__")


def module_for(array, op: str):
    """The native module that runs `op` on `array`'s device."""
    if isinstance(array, np.ndarray):
        return _cpu
    if is_cupy_array(array):
        status = cuda_available()
        if not status:
            raise RuntimeError(f"{op}: got a CuPy array but CUDA cannot run: {status.reason}")
        if not hasattr(_cuda_module, op):
            raise NotImplementedError(
                f"{op}: convlab._cuda has no CUDA kernel for this operation yet; "
                "move the arrays to the CPU with cupy.asnumpy()"
            )
        return _cuda_module
    raise TypeError(
        f"{op}: expected a numpy.ndarray (or a CuPy array), got {type(array).__name__}"
    )


def array_module(array):
    """numpy for numpy arrays, cupy for CuPy arrays."""
    if is_cupy_array(array):
        return importlib.import_module("cupy")
    return np
