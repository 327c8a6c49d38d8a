"""The pool of large kernel outputs (convlab._backend._OutputPool): a block goes back to the
pool only when the last array or view using it is gone, and comes back for the next output
of the same size."""

import gc

import numpy as np

from convlab import _backend, kernels


def _pooled(array):
    """Whether an array's memory is lent by the pool (somewhere up its base chain)."""
    while array is not None:
        if isinstance(array, _backend._PooledBuffer):
            return True
        array = getattr(array, "base", None)
    return False


def _pool():
    return _backend._OutputPool(min_bytes=1 << 10, limit=1 << 20)


def test_a_block_is_reused_only_after_every_view_of_it_is_gone():
    pool = _pool()
    a = pool.empty((16, 16), np.dtype(np.float32))
    address = a.ctypes.data
    view = a[3:5]
    view[...] = 7.0
    del a
    gc.collect()
    b = pool.empty((16, 16), np.dtype(np.float32))  # `view` still holds the first block
    assert b.ctypes.data != address
    b[...] = -1.0
    second_address = b.ctypes.data
    np.testing.assert_array_equal(view, np.full((2, 16), 7.0, np.float32))
    del view, b
    gc.collect()
    c = pool.empty((16, 16), np.dtype(np.float32))
    assert c.ctypes.data in (address, second_address)  # a freed block came back
    assert pool.held_bytes() == 16 * 16 * 4  # and the other waits in the pool


def test_small_outputs_and_a_full_pool_fall_back_to_plain_arrays():
    pool = _backend._OutputPool(min_bytes=1 << 10, limit=2048)
    assert pool.empty((4,), np.dtype(np.float32)) is None  # 16 bytes: below min_bytes
    arrays = [pool.empty((256,), np.dtype(np.float64)) for _ in range(3)]  # 2 KiB each
    del arrays
    gc.collect()
    assert pool.held_bytes() <= 2048


def test_pooled_kernel_outputs_equal_plain_ones(monkeypatch):
    """A conv whose output (4 MiB) comes from the pool, twice, against the same conv with the
    pool off: the recycled block holds the previous result until the kernel overwrites it."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 64, 64, 8)).astype(np.float32)
    w = rng.standard_normal((3, 3, 8, 32)).astype(np.float32)
    monkeypatch.setattr(_backend, "_output_pool", _backend._OutputPool(min_bytes=1 << 20, limit=64 << 20))
    first = kernels.conv2d_forward(x, w, padding="same")
    assert _pooled(first)
    expected = first.copy()
    del first
    gc.collect()
    second = kernels.conv2d_forward(x * 2, w, padding="same")
    monkeypatch.setattr(_backend, "_output_pool", _backend._OutputPool(min_bytes=1 << 20, limit=0))
    plain = kernels.conv2d_forward(x * 2, w, padding="same")
    assert not _pooled(plain)
    np.testing.assert_array_equal(second, plain)
    np.testing.assert_allclose(second, 2 * expected, rtol=1e-5, atol=1e-5)
