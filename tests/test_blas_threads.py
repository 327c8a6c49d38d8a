"""While a model trains or predicts, numpy's BLAS runs on one thread (its spinning pool would
fight convlab's OpenMP team for the cores); outside, it is left as it was."""

import numpy as np
import pytest

import convlab
from convlab import layers

threadpoolctl = pytest.importorskip("threadpoolctl")


def _blas_threads():
    return [pool["num_threads"] for pool in threadpoolctl.threadpool_info() if pool["user_api"] == "blas"]


def test_blas_is_held_to_one_thread_while_training_and_restored_after():
    np.ones((64, 64)) @ np.ones((64, 64))  # load numpy's BLAS
    before = _blas_threads()
    if not before:
        pytest.skip("numpy's BLAS is not one threadpoolctl knows")
    seen = []

    class Probe(convlab.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(_blas_threads())

    model = convlab.Sequential([layers.Input((4,)), layers.Dense(3)])
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.ones((8, 4), np.float32), np.zeros((8, 3), np.float32)
    model.fit(x, y, epochs=1, batch_size=4, verbose=0, callbacks=[Probe()])
    assert seen and all(threads == [1] * len(before) for threads in seen)
    assert _blas_threads() == before


def test_the_limit_can_be_turned_off(monkeypatch):
    np.ones((64, 64)) @ np.ones((64, 64))
    before = _blas_threads()
    if not before:
        pytest.skip("numpy's BLAS is not one threadpoolctl knows")
    monkeypatch.setenv("CONVLAB_LIMIT_BLAS_THREADS", "0")
    from convlab import training

    with training._one_blas_thread():
        assert _blas_threads() == before
