"""compile / fit / evaluate / predict and the callbacks, each against an independent computation."""

import numpy as np
import pytest

import convlab
from convlab import callbacks, layers, optimizers, utils
from convlab.models import Model, Sequential


def softmax_classifier(features=4, classes=3, dtype="float64"):
    utils.set_seed(3)
    inputs = layers.Input(shape=(features,), dtype=dtype)
    outputs = layers.Dense(classes, activation="softmax", dtype=dtype)(inputs)
    return Model(inputs, outputs)


def small_convnet(seed=0):
    utils.set_seed(seed)
    return Sequential([
        layers.Input(shape=(8, 8, 1)),
        layers.Conv2D(4, 3, activation="relu"),
        layers.BatchNormalization(),
        layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dense(3, activation="softmax"),
    ])


def data(rng, n=40, shape=(8, 8, 1), classes=3):
    return rng.random((n,) + shape).astype("float32"), rng.integers(0, classes, n)


class ScriptedLogs(callbacks.Callback):
    """Overwrites a logged value with a scripted sequence, so callbacks see known numbers."""

    def __init__(self, key, values):
        super().__init__()
        self.key, self.values = key, values

    def on_epoch_end(self, epoch, logs=None):
        logs[self.key] = self.values[epoch]


class WeightsAtEpochEnd(callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.weights = []

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append(self.model.get_weights())


# --------------------------------------------------------------------------- fit itself


def test_fit_follows_the_same_steps_as_torch_sgd(rng):
    torch = pytest.importorskip("torch")
    model = softmax_classifier()
    x = rng.standard_normal((20, 4))
    y = rng.integers(0, 3, 20)
    kernel, bias = (torch.tensor(w, requires_grad=True) for w in model.get_weights())
    torch_optimizer = torch.optim.SGD([kernel, bias], lr=0.1, momentum=0.9)
    for _epoch in range(2):
        for start in range(0, 20, 8):  # batches of 8, 8, 4: the last one short, as in Keras
            torch_optimizer.zero_grad()
            logits = torch.tensor(x[start:start + 8]) @ kernel + bias
            torch.nn.functional.cross_entropy(logits, torch.tensor(y[start:start + 8])).backward()
            torch_optimizer.step()
    model.compile(optimizers.SGD(0.1, momentum=0.9), "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    np.testing.assert_allclose(model.get_weights()[0], kernel.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(model.get_weights()[1], bias.detach().numpy(), rtol=1e-10, atol=1e-12)


def test_history_loss_is_the_sample_weighted_mean_of_batch_losses(rng):
    model = softmax_classifier()
    x, y = rng.standard_normal((10, 4)), rng.integers(0, 3, 10)
    model.compile(optimizers.SGD(1e-9), "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    # a learning rate of 1e-9 leaves the weights (to 1e-8), so the epoch loss is the loss of the data
    kernel, bias = model.get_weights()
    logits = x @ kernel + bias
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    expected = -np.log(p[np.arange(10), y]).mean()
    assert history.history["loss"][0] == pytest.approx(expected, rel=1e-6)
    assert history.history["accuracy"][0] == pytest.approx(np.mean(p.argmax(1) == y))


def test_validation_split_holds_out_the_last_fraction(rng):
    model = small_convnet()
    x, y = data(rng, n=40)
    model.compile("rmsprop", "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, batch_size=8, epochs=1, validation_split=0.25, verbose=0)
    loss, accuracy = model.evaluate(x[30:], y[30:], batch_size=8, verbose=0)
    assert history.history["val_loss"][0] == pytest.approx(loss, rel=1e-6)
    assert history.history["val_accuracy"][0] == pytest.approx(accuracy)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}


def test_same_seed_repeats_the_loss_curve_exactly(rng):
    x, y = data(rng, n=48)
    curves = []
    for _ in range(2):
        model = small_convnet(seed=11)
        model.compile("adam", "sparse_categorical_crossentropy")
        utils.set_seed(5)  # the shuffling order comes from the seeded generator
        curves.append(model.fit(x, y, batch_size=16, epochs=3, verbose=0).history["loss"])
    assert curves[0] == curves[1]
    model = small_convnet(seed=11)
    model.compile("adam", "sparse_categorical_crossentropy")
    utils.set_seed(6)
    assert model.fit(x, y, batch_size=16, epochs=3, verbose=0).history["loss"] != curves[0]


def test_frozen_layers_keep_their_weights_and_frozen_batch_norm_runs_in_inference_mode(rng):
    model = small_convnet()
    conv, norm = model.layers[0], model.layers[1]
    conv.trainable = False
    norm.trainable = False
    before = {w.name: w.numpy().copy() for w in model.weights}
    x, y = data(rng)
    model.compile("rmsprop", "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    for w in model.weights:
        changed = not np.array_equal(before[w.name], w.numpy())
        assert changed == w.name.startswith("dense"), w.name  # only the Dense layer trains
    # a frozen BatchNormalization normalizes with its moving statistics even when training=True
    np.testing.assert_array_equal(model(x[:5], training=True).numpy(), model(x[:5], training=False).numpy())


def test_fit_on_a_dataset_equals_fit_on_the_same_arrays(rng):
    x, y = data(rng, n=24)

    class Batches:
        def __len__(self):
            return 3

        def __iter__(self):
            for start in range(0, 24, 8):
                yield x[start:start + 8], y[start:start + 8]

    results = []
    for source in ("arrays", "dataset"):
        model = small_convnet(seed=2)
        model.compile("sgd", "sparse_categorical_crossentropy")
        if source == "arrays":
            model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
        else:
            model.fit(Batches(), epochs=2, verbose=0)
        results.append(model.get_weights())
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_predict_runs_batch_by_batch_and_matches_one_big_call(rng):
    seen = []
    inputs = layers.Input(shape=(8, 8, 1))
    model = small_convnet()
    spy = layers.Lambda(lambda t: (seen.append(t.shape[0]), t)[1])
    outputs = model(spy(inputs))
    wrapped = Model(inputs, outputs)
    seen.clear()  # building ran the Lambda once on a dummy batch to infer its output shape
    x, _ = data(rng, n=100)
    predictions = wrapped.predict(x, batch_size=32)
    assert seen == [32, 32, 32, 4]
    np.testing.assert_allclose(predictions, model(x).numpy(), rtol=1e-6, atol=1e-7)


def test_multi_output_losses_are_weighted_and_logged_per_output(rng):
    utils.set_seed(1)
    inputs = layers.Input(shape=(6,))
    hidden = layers.Dense(5, activation="relu")(inputs)
    classes = layers.Dense(3, activation="softmax", name="classes")(hidden)
    box = layers.Dense(2, name="box")(hidden)
    model = Model(inputs, [classes, box])
    model.compile("adam", loss={"classes": "sparse_categorical_crossentropy", "box": "mse"},
                  loss_weights={"classes": 1.0, "box": 0.5}, metrics={"classes": ["accuracy"]})
    x = rng.standard_normal((16, 6)).astype("float32")
    y_class, y_box = rng.integers(0, 3, 16), rng.standard_normal((16, 2)).astype("float32")
    logs = model.evaluate(x, [y_class, y_box], batch_size=16, verbose=0, return_dict=True)
    p, b = model.predict(x)
    cross_entropy = -np.log(p[np.arange(16), y_class]).mean()
    squared = ((b - y_box) ** 2).mean()
    assert logs["classes_loss"] == pytest.approx(cross_entropy, rel=1e-5)
    assert logs["box_loss"] == pytest.approx(squared, rel=1e-5)
    assert logs["loss"] == pytest.approx(cross_entropy + 0.5 * squared, rel=1e-5)
    assert logs["classes_accuracy"] == pytest.approx(np.mean(p.argmax(1) == y_class))
    history = model.fit(x, [y_class, y_box], epochs=2, verbose=0)
    assert history.history["loss"][1] < history.history["loss"][0]


def test_progress_bar_prints_each_epoch_with_loss_metrics_and_throughput(rng, capsys):
    model = small_convnet()
    x, y = data(rng, n=16)
    model.compile("rmsprop", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, batch_size=8, epochs=2, verbose=1)
    out = capsys.readouterr().out
    assert out.count("Epoch ") == 2 and "Epoch 2/2" in out
    assert out.count("2/2 [") == 2 and "samples/s" in out and " - loss: " in out and " - accuracy: " in out
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert capsys.readouterr().out == ""


# --------------------------------------------------------------------------- bad input, before training


class CountBatches(callbacks.Callback):
    batches = 0

    def on_train_batch_begin(self, batch, logs=None):
        CountBatches.batches += 1


@pytest.mark.parametrize("case, message", [
    ("lengths", "x has 40 samples but y has 39"),
    ("labels", r"labels must be in \[0, 3\).*got labels in \[0, 7\]"),
    ("image size", r"x has shape \(40, 9, 9, 1\).*expects \(None, 8, 8, 1\)"),
    ("float labels", "integer class labels"),
])
def test_bad_data_is_refused_before_any_training_step(rng, case, message):
    model = small_convnet()
    model.compile("rmsprop", "sparse_categorical_crossentropy")
    x, y = data(rng, n=40)
    if case == "lengths":
        y = y[:39]
    elif case == "labels":
        y = y.copy()
        y[5] = 7
    elif case == "image size":
        x = rng.random((40, 9, 9, 1)).astype("float32")
    else:
        y = y + 0.5
    before = model.get_weights()
    CountBatches.batches = 0
    with pytest.raises(ValueError, match=message):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[CountBatches()])
    assert CountBatches.batches == 0
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_empty_data_is_refused_naming_the_empty_input(rng):
    model = small_convnet()
    model.compile("rmsprop", "sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = data(rng, n=8)
    empty = r"x is empty: 0 samples \(shape \(0, 8, 8, 1\)\)"
    for call in (lambda: model.fit(x[:0], y[:0], verbose=0),
                 lambda: model.fit(x[:0], y[:0], validation_split=0.5, verbose=0),
                 lambda: model.evaluate(x[:0], y[:0], verbose=0),
                 lambda: model.train_on_batch(x[:0], y[:0])):
        with pytest.raises(ValueError, match=empty):
            call()
    with pytest.raises(ValueError, match=r"fit \(validation_data\): x is empty"):
        model.fit(x, y, validation_data=(x[:0], y[:0]), verbose=0)
    assert model.predict(x[:0]).shape == (0, 3)  # predicting nothing is well defined: no rows


@pytest.mark.parametrize("argument, value", [
    ("batch_size", "abc"), ("batch_size", float("nan")), ("batch_size", 0), ("batch_size", 2.5),
    ("batch_size", True), ("epochs", float("inf")), ("epochs", "abc"), ("epochs", -1),
    ("initial_epoch", None), ("validation_freq", 0), ("validation_batch_size", "8"), ("verbose", "loud"),
    ("validation_split", "0.2"),
])
def test_fit_arguments_that_are_not_counts_are_refused_naming_them(rng, argument, value):
    model = small_convnet()
    model.compile("rmsprop", "sparse_categorical_crossentropy")
    x, y = data(rng, n=8)
    CountBatches.batches = 0
    with pytest.raises(ValueError) as caught:
        model.fit(x, y, callbacks=[CountBatches()], **dict({"verbose": 0}, **{argument: value}))
    message = str(caught.value)
    assert message.startswith(f"Model '{model.name}'.fit: {argument} must be") and message.endswith(f"got {value!r}")
    assert "\n" not in message and CountBatches.batches == 0
    assert model.fit(x, y, batch_size=4.0, epochs=1.0, verbose=0).epoch == [0]  # integral floats are counts


def test_non_finite_data_warns_once_and_terminate_on_nan_stops_at_the_first_nan_loss(rng, capsys):
    x, y = data(rng, n=32)
    x[21, 3, 4, 0] = np.nan  # sample 21: in batch 21 // 8 + 1 = 3 of an unshuffled epoch
    model = small_convnet()
    model.compile("rmsprop", "sparse_categorical_crossentropy")
    seen = []
    counter = callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: seen.append(logs["loss"]))
    with pytest.warns(RuntimeWarning, match=r"batch 3 of epoch 1 holds NaN or infinity in x;.*TerminateOnNaN") as caught:
        history = model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=2,
                            callbacks=[counter, callbacks.TerminateOnNaN()])
    assert len([w for w in caught if issubclass(w.category, RuntimeWarning)]) == 1
    assert len(seen) == 3 and np.isfinite(seen[:2]).all() and np.isnan(seen[2])  # stopped in batch 3
    assert history.epoch == [0] and np.isnan(history.history["loss"][0])
    out = capsys.readouterr().out
    assert "Batch 2: Invalid loss, terminating training" in out and " - loss: nan" in out
    # without the callback the run goes on, and the weights end as NaN, as in Keras
    model = small_convnet()
    model.compile("rmsprop", "sparse_categorical_crossentropy")
    with pytest.warns(RuntimeWarning, match="batch 3 of epoch 1"):
        model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    assert np.isnan(model.layers[0].kernel.numpy()).all()


def test_an_infinite_target_is_named_in_the_warning(rng):
    inputs = layers.Input((3,))
    model = Model(inputs, layers.Dense(1)(inputs))
    model.compile("sgd", "mse")
    x, y = rng.random((6, 3)), rng.random((6, 1))
    y[0, 0] = np.inf
    with pytest.warns(RuntimeWarning, match=r"batch 1 of epoch 1 holds NaN or infinity in y;"), \
            np.errstate(invalid="ignore"):  # numpy's own warning of the inf * 0 in the gradient
        model.fit(x, y, batch_size=6, epochs=1, verbose=0)


def test_a_one_shot_generator_is_refused_rather_than_silently_losing_a_batch(rng):
    model = small_convnet()
    model.compile("sgd", "sparse_categorical_crossentropy")
    x, y = data(rng, n=16)
    batches = ((x[i:i + 8], y[i:i + 8]) for i in range(0, 16, 8))
    with pytest.raises(TypeError, match="one-shot iterator"):
        model.fit(batches, epochs=1, verbose=0)


def test_unknown_names_and_missing_compile_raise_clear_errors(rng):
    model = small_convnet()
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprob'"):
        model.compile("rmsprob", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="unknown loss 'sparse_crossentropy'"):
        model.compile("rmsprop", "sparse_crossentropy")
    with pytest.raises(ValueError, match="unknown metric 'acuracy'"):
        model.compile("rmsprop", "sparse_categorical_crossentropy", metrics=["acuracy"])
    with pytest.raises(RuntimeError, match="call compile"):
        small_convnet().fit(*data(rng), verbose=0)


# --------------------------------------------------------------------------- callbacks


def test_early_stopping_waits_patience_epochs_and_restores_the_best_weights(rng):
    model = small_convnet()
    model.compile("rmsprop", "sparse_categorical_crossentropy")
    recorder = WeightsAtEpochEnd()
    scripted = ScriptedLogs("val_loss", [1.0, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1])
    stopper = callbacks.EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    history = model.fit(*data(rng), epochs=8, verbose=0, callbacks=[scripted, recorder, stopper])
    # best at epoch index 1; two epochs without improvement (2, 3) and it stops after epoch index 3
    assert len(history.history["loss"]) == 4
    for a, b in zip(model.get_weights(), recorder.weights[1]):
        np.testing.assert_array_equal(a, b)


def test_model_checkpoint_save_best_only_keeps_the_best_epoch(rng, tmp_path):
    model = small_convnet()
    model.compile("rmsprop", "sparse_categorical_crossentropy")
    recorder = WeightsAtEpochEnd()
    path = tmp_path / "best.keras"
    checkpoint = callbacks.ModelCheckpoint(path, monitor="val_accuracy", save_best_only=True)
    scripted = ScriptedLogs("val_accuracy", [0.5, 0.7, 0.6, 0.65])
    model.fit(*data(rng), epochs=4, verbose=0, callbacks=[scripted, recorder, checkpoint])
    saved = convlab.models.load_model(path)
    for a, b in zip(saved.get_weights(), recorder.weights[1]):  # "acc" in the name: maximized
        np.testing.assert_array_equal(a, b)
    every = callbacks.ModelCheckpoint(str(tmp_path / "epoch_{epoch:02d}.keras"), save_best_only=False)
    model.fit(*data(rng), epochs=2, verbose=0, callbacks=[every])
    assert sorted(p.name for p in tmp_path.glob("epoch_*.keras")) == ["epoch_01.keras", "epoch_02.keras"]


def test_learning_rate_callbacks_set_the_optimizer_rate(rng):
    model = small_convnet()
    model.compile(optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    scheduler = callbacks.LearningRateScheduler(lambda epoch, lr: 0.1 * 0.5 ** epoch)
    history = model.fit(*data(rng), epochs=3, verbose=0, callbacks=[scheduler])
    assert history.history["learning_rate"] == pytest.approx([0.1, 0.05, 0.025])
    plateau = callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=1)
    scripted = ScriptedLogs("val_loss", [1.0, 1.0, 1.0, 0.2])
    model.compile(optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    history = model.fit(*data(rng), epochs=4, verbose=0, callbacks=[scripted, plateau])
    assert history.history["learning_rate"] == pytest.approx([0.1, 0.05, 0.025, 0.025])


def test_callback_hooks_run_in_keras_order(rng):
    events = []

    class Recorder(callbacks.Callback):
        def on_train_begin(self, logs=None): events.append("train_begin")
        def on_epoch_begin(self, epoch, logs=None): events.append(f"epoch_begin {epoch}")
        def on_train_batch_end(self, batch, logs=None): events.append(f"batch_end {batch}")
        def on_test_begin(self, logs=None): events.append("test_begin")
        def on_epoch_end(self, epoch, logs=None): events.append(f"epoch_end {epoch} {sorted(logs)}")
        def on_train_end(self, logs=None): events.append("train_end")

    model = small_convnet()
    model.compile("sgd", "sparse_categorical_crossentropy")
    x, y = data(rng, n=16)
    model.fit(x, y, batch_size=8, epochs=1, validation_data=(x, y), verbose=0, callbacks=[Recorder()])
    assert events == ["train_begin", "epoch_begin 0", "batch_end 0", "batch_end 1", "test_begin",
                      "epoch_end 0 ['loss', 'val_loss']", "train_end"]


@pytest.mark.cuda
def test_fit_on_cuda_matches_fit_on_cpu(rng):
    x, y = data(rng, n=32)
    results = []
    for device in ("cpu", "cuda"):
        model = small_convnet(seed=4)
        model.to(device)
        model.compile(optimizers.SGD(0.05), "sparse_categorical_crossentropy")
        model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
        results.append(model.get_weights())
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
