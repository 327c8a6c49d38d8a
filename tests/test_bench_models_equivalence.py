"""The PyTorch models of benches/test_bench_models.py are the convlab models: the same
parameter counts, and with convlab's weights copied in, the same predictions."""

import importlib.util
import os

import numpy as np
import pytest

import convlab

torch = pytest.importorskip("torch")

_BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "benches", "test_bench_models.py")


@pytest.fixture(scope="module")
def bench(single_threaded_torch):
    spec = importlib.util.spec_from_file_location("convlab_bench_models", _BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _randomize_batch_norm(model, rng):
    """Moving statistics and scales away from their initial 0 and 1, so that copying them matters."""
    for layer in model.layers:
        if isinstance(layer, convlab.layers.BatchNormalization):
            channels = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, channels), rng.normal(0, 0.1, channels),
                               rng.normal(0, 0.1, channels), rng.uniform(0.5, 1.5, channels)])


def _count_torch(torch_model):
    trainable = sum(p.numel() for p in torch_model.parameters())
    statistics = sum(b.numel() for name, b in torch_model.named_buffers()
                     if name.endswith(("running_mean", "running_var")))
    return trainable, statistics


@pytest.mark.parametrize("name, shape, batch", [
    ("mnist_convnet", (28, 28, 1), 3),
    ("mini_xception", (64, 64, 3), 2),
])
def test_same_parameters_and_predictions(bench, name, shape, batch):
    rng = np.random.default_rng(0)
    model = bench.MODELS[name][0](shape)
    torch_model = bench.TORCH_MODELS[name]()
    trainable, statistics = _count_torch(torch_model)
    convlab_trainable = sum(w.size for w in model.trainable_weights)
    assert trainable == convlab_trainable
    assert trainable + statistics == model.count_params()
    if name == "mini_xception":
        assert model.count_params() == 721_857 and convlab_trainable == 718_849  # the book's summary
    else:
        assert model.count_params() == 104_202

    _randomize_batch_norm(model, rng)
    bench.copy_weights(model, torch_model)
    torch_model = torch_model.to(memory_format=torch.channels_last).eval()
    scale = 255.0 if name == "mini_xception" else 1.0
    x = (scale * rng.random((batch,) + shape)).astype(np.float32)
    expected = model.predict(x, batch_size=batch)
    with torch.no_grad():
        got = torch_model(bench.torch_input(x)).numpy()
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    assert np.ptp(expected) > 1e-3  # the predictions differ between samples: a real comparison


def test_keras_same_max_pool_matches_convlab(bench):
    """Both of PyTorch's ways to pool like Keras' "same" (symmetric padding; one pixel more after,
    through ceil_mode) against convlab's MaxPooling2D."""
    rng = np.random.default_rng(1)
    for size in (11, 12, 15, 60):
        x = rng.standard_normal((2, size, size + 1, 3)).astype(np.float32)
        expected = convlab.layers.MaxPooling2D(3, strides=2, padding="same")(x).numpy()
        got = bench.keras_same_max_pool(bench.torch_input(x), 3, 2).permute(0, 2, 3, 1).numpy()
        np.testing.assert_array_equal(got, expected)


def test_a_training_step_has_the_same_loss_and_gradients(bench):
    """The bench's two training steps compute the same thing: the MNIST convnet from the same
    weights has the same loss and the same gradients in both. (The updates then differ where a
    gradient is tiny: Keras and convlab put RMSprop's epsilon inside the square root, PyTorch
    outside; the work per step is the same.)"""
    convlab.utils.set_seed(3)
    rng = np.random.default_rng(3)
    model = convlab.applications.mnist_convnet()
    torch_model = bench.copy_weights(model, bench.TorchMnistConvnet()).to(memory_format=torch.channels_last)
    x = rng.random((8, 28, 28, 1)).astype(np.float32)
    y = rng.integers(0, 10, 8)

    with convlab.GradientTape() as tape:
        loss = convlab.losses.get("sparse_categorical_crossentropy")(y, model(x, training=True))
    gradients = tape.gradient(loss, model.trainable_weights)
    torch_loss = bench.torch_loss("sparse_categorical_crossentropy", torch_model(bench.torch_input(x)),
                                  torch.from_numpy(y))
    torch_loss.backward()
    assert torch_loss.item() == pytest.approx(loss.item(), rel=1e-5)

    torch_gradients = [p.grad for module in (torch_model.conv1, torch_model.conv2, torch_model.conv3,
                                             torch_model.dense) for p in (module.weight, module.bias)]
    assert len(torch_gradients) == len(gradients)
    for ours, theirs in zip(gradients, torch_gradients):
        ours = ours.numpy()
        if ours.ndim == 4:
            ours = ours.transpose(3, 2, 0, 1)
        elif ours.ndim == 2:
            ours = ours.T
        scale = np.abs(ours).max()
        np.testing.assert_allclose(theirs.numpy(), ours, rtol=0, atol=1e-4 * scale)
