"""convlab.device(): Keras' device scope, and the one error CUDA gives where it cannot run."""

import numpy as np
import pytest

import convlab
from convlab import layers


def test_weights_built_inside_a_cpu_scope_are_numpy_arrays():
    with convlab.device("cpu"):
        model = convlab.applications.mnist_convnet()
    assert model.device == "cpu"
    assert all(isinstance(w, np.ndarray) for w in model.get_weights())


@pytest.mark.parametrize("name", ["tpu", "cuda:1", "", "gpu:7"])
def test_unknown_device_names_are_refused_naming_what_was_given(name):
    with pytest.raises(ValueError, match=f"device must be .*got {name!r}"):
        with convlab.device(name):
            pass


def test_a_device_that_is_not_a_string_is_refused():
    with pytest.raises(TypeError, match="device must be a string"):
        with convlab.device(0):
            pass


def test_cuda_where_it_cannot_run_raises_the_reason_cuda_available_gives():
    status = convlab.cuda_available()
    if status:
        pytest.skip("CUDA can run here")
    for spelling in ("cuda", "gpu", "gpu:0", "cuda:0"):
        with pytest.raises(RuntimeError, match="device 'cuda' is not available") as error:
            with convlab.device(spelling):
                pass
        assert status.reason in str(error.value)
    model = convlab.applications.mnist_convnet()
    with pytest.raises(RuntimeError) as error:
        model.to("cuda")
    assert status.reason in str(error.value)


def test_the_scope_ends_with_its_block():
    assert convlab.autograd.default_device() is None
    with convlab.device("cpu"):
        assert convlab.autograd.default_device() == "cpu"
    assert convlab.autograd.default_device() is None


@pytest.mark.cuda
def test_weights_built_inside_a_cuda_scope_live_on_the_gpu_and_compute_as_on_the_cpu():
    x = np.random.default_rng(0).random((2, 12, 12, 3)).astype(np.float32)
    convlab.utils.set_seed(3)
    cpu_model = convlab.Sequential([layers.Conv2D(4, 3, activation="relu"), layers.GlobalAveragePooling2D(),
                                    layers.Dense(2)])
    expected = cpu_model(x).numpy()
    convlab.utils.set_seed(3)
    with convlab.device("gpu"):
        gpu_model = convlab.Sequential([layers.Conv2D(4, 3, activation="relu"),
                                        layers.GlobalAveragePooling2D(), layers.Dense(2)])
        gpu_model.build((None, 12, 12, 3))
    assert gpu_model.device == "cuda"
    np.testing.assert_allclose(gpu_model(convlab.Tensor(x).to("cuda")).numpy(), expected,
                               rtol=1e-4, atol=1e-6)
