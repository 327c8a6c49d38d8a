"""`training=` given while building a functional model fixes that call's mode, as in Keras:
`x = base(inputs, training=False)` keeps the base's batch norm in inference mode (and its
dropout off) while the whole model trains, and the choice survives save and load."""

import numpy as np

import convlab
from convlab import layers


def _frozen_base_model(training):
    convlab.utils.set_seed(0)
    base = convlab.Sequential([layers.Input((6,)), layers.Dense(4), layers.BatchNormalization(),
                               layers.Dropout(0.5)], name="base")
    inputs = layers.Input((6,))
    features = base(inputs, training=training) if training is not None else base(inputs)
    outputs = layers.Dense(1)(features)
    model = convlab.Model(inputs, outputs)
    model.compile(optimizer="sgd", loss="mse")
    return model, base


def _moving_statistics(base):
    bn = base.layers[1]
    return bn.moving_mean.numpy().copy(), bn.moving_variance.numpy().copy()


def test_a_base_called_with_training_false_stays_in_inference_mode_while_the_model_trains():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 6)).astype(np.float32)
    model, base = _frozen_base_model(training=False)
    before = _moving_statistics(base)
    # In training mode the model computes what inference computes: the base's dropout is off
    # and its batch norm uses the moving statistics, the same numbers as the base alone.
    expected = model.layers[-1](base(x, training=False)).numpy()
    np.testing.assert_allclose(model(x, training=True).numpy(), expected, rtol=1e-6)
    model.train_on_batch(x, rng.standard_normal((16, 1)).astype(np.float32))
    after = _moving_statistics(base)
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_array_equal(before[1], after[1])


def test_without_the_flag_the_base_follows_the_model():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((16, 6)).astype(np.float32)
    model, base = _frozen_base_model(training=None)
    before = _moving_statistics(base)
    model.train_on_batch(x, rng.standard_normal((16, 1)).astype(np.float32))
    assert not np.array_equal(before[0], _moving_statistics(base)[0])  # batch norm trained


def test_the_fixed_mode_is_saved_with_the_model(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((8, 6)).astype(np.float32)
    model, _ = _frozen_base_model(training=False)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = convlab.models.load_model(path)
    np.testing.assert_allclose(loaded(x, training=True).numpy(), model(x, training=False).numpy(), rtol=1e-6)
