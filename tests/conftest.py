"""Shared pytest configuration: the `cuda` marker, a seeded random generator and the
`device` the kernel tests run on (tests/devices.py)."""

import os
import sys
import zlib

import numpy as np
import pytest

# The test modules import the float64 reference as `import reference`, whatever
# pytest's import mode.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import devices  # noqa: E402  (tests/devices.py, found through the line above)


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU")


def _cuda_skip_reason():
    try:
        import convlab
    except Exception as error:  # not built: nothing of convlab runs, CUDA least of all
        return f"convlab does not import: {error}"
    available = convlab.cuda_available()
    if available:
        return None
    return getattr(available, "reason", None) or "no CUDA GPU available"


def pytest_collection_modifyitems(config, items):
    cuda_items = [item for item in items if item.get_closest_marker("cuda") is not None]
    if not cuda_items:
        return
    reason = _cuda_skip_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=f"needs a CUDA GPU: {reason}")
    for item in cuda_items:
        item.add_marker(skip)


@pytest.fixture
def rng(request):
    """A numpy Generator seeded from the test's id: each test (and each parametrization)
    gets its own data, the same on every run."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture(scope="module")
def single_threaded_torch():
    """Runs a module's PyTorch cross-checks on one torch thread.

    Their tensors are tiny: torch's thread pool only adds wake-up latency, and on a
    loaded 2-core machine its spinning threads slow everything else down.
    """
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(params=devices.PARAMS)
def device(request):
    """The device a kernel test runs on: cpu, host-fast, host-reference, cuda-fast or
    cuda-reference (tests/devices.py). Its settings (NaN-filled outputs, the host executor,
    the default variant) hold for the whole test; inputs go in through `device.array(...)`,
    results come back through `device.numpy(...)`."""
    with devices.DEVICES[request.param].active() as active:
        yield active
