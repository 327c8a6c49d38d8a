"""Géron's classification-and-localization model and the FCN segmentation net with skip
connections (convlab.applications.localization_model, fcn_segmentation): shapes, parameter
counts and outputs against the same nets built in Keras (torch backend) with the same
weights; the bilinear upsampling kernel against torch's bilinear resize; short training runs
whose metrics are recomputed here from the predictions; a gradcheck of a tiny FCN; and the
two jobs' quick runs."""

import json
import os

import numpy as np
import pytest

from convlab import applications, detection, optimizers, utils
from convlab.datasets import shapes
from convlab.localization_job import normalized_center_boxes, train_fcn, train_localization

from gradcheck_helpers import layer_gradcheck


# Keras' torch backend converts its outputs with np.array(x, copy=False), which numpy 2 warns about
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


@pytest.fixture(scope="module")
def keras(single_threaded_torch):
    os.environ.setdefault("KERAS_BACKEND", "torch")
    pytest.importorskip("torch")
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "torch":
        pytest.skip(f"these checks build Keras models on the torch backend, found {keras.backend.backend()}")
    return keras


@pytest.fixture
def float64():
    utils.set_floatx("float64")
    yield
    utils.set_floatx("float32")


# ---------------------------------------------------------------------------- the same nets in Keras


def keras_localization(keras, input_shape, classes, filters, dense_units):
    L = keras.layers
    inputs = keras.Input(input_shape)
    x = L.Rescaling(1 / 255)(inputs)
    for stage, width in enumerate(filters, start=1):
        x = L.Conv2D(width, 3, padding="same", use_bias=False, name=f"block{stage}_conv")(x)
        x = L.BatchNormalization(name=f"block{stage}_bn")(x)
        x = L.MaxPooling2D(2)(L.ReLU()(x))
    x = L.Flatten()(x)
    if dense_units:
        x = L.Dense(dense_units, activation="relu", name="shared_dense")(x)
    return keras.Model(inputs, [L.Dense(classes, activation="softmax", name="class")(x),
                                L.Dense(4, activation="sigmoid", name="box")(x)])


def keras_fcn(keras, input_shape, classes, filters):
    """FCN-8s' wiring written out from the paper: VGG blocks, fc6/fc7 as convs, a 1x1 score,
    two x2 upsamplings each fused with the 1x1 score of a pool, one final upsampling."""
    L = keras.layers
    inputs = keras.Input(input_shape)
    x = L.Rescaling(1 / 255)(inputs)
    pools = []
    for stage, width in enumerate(filters, start=1):
        x = L.Conv2D(width, 3, padding="same", activation="relu", name=f"block{stage}_conv1")(x)
        x = L.Conv2D(width, 3, padding="same", activation="relu", name=f"block{stage}_conv2")(x)
        x = L.MaxPooling2D(2)(x)
        pools.append(x)
    x = L.Conv2D(2 * filters[-1], 3, padding="same", activation="relu", name="fc6")(x)
    x = L.Conv2D(2 * filters[-1], 1, activation="relu", name="fc7")(x)
    score = L.Conv2D(classes, 1, name="score_fr")(x)
    n = len(filters)
    score = L.Add()([L.Conv2DTranspose(classes, 4, strides=2, padding="same", use_bias=False, name="upscore2")(score),
                     L.Conv2D(classes, 1, name=f"score_pool{n - 1}")(pools[n - 2])])
    score = L.Add()([L.Conv2DTranspose(classes, 4, strides=2, padding="same", use_bias=False, name="upscore4")(score),
                     L.Conv2D(classes, 1, name=f"score_pool{n - 2}")(pools[n - 3])])
    factor = 2 ** (n - 2)
    score = L.Conv2DTranspose(classes, 2 * factor, strides=factor, padding="same", use_bias=False,
                              name="upscore_final")(score)
    return keras.Model(inputs, L.Softmax()(score))


def scaled_normal(rng, shape):
    """Random weights that keep activations of order 1 (a saturated softmax would turn float32
    rounding into visible differences): kernels N(0, 1/fan_in), biases N(0, 0.1^2)."""
    scale = 0.1 if len(shape) == 1 else 1 / np.sqrt(np.prod(shape[:-1]))
    return (scale * rng.standard_normal(shape)).astype(np.float32)


def test_localization_model_matches_keras_in_shapes_counts_and_outputs(keras, rng):
    for filters, dense_units, input_shape in (((16, 32, 64, 128), None, (64, 64, 3)), ((4, 8), 16, (24, 20, 3))):
        model = applications.localization_model(input_shape=input_shape, filters=filters, dense_units=dense_units)
        reference = keras_localization(keras, input_shape, 3, filters, dense_units)
        assert model.count_params() == reference.count_params()
        assert sum(w.size for w in model.trainable_weights) == sum(
            int(np.prod(w.shape)) for w in reference.trainable_weights)
        assert [tuple(o.shape) for o in model.outputs] == [(None, 3), (None, 4)]
        for layer in model.layers:
            if layer.get_weights():
                weights = [rng.uniform(0.5, 1.5, w.shape).astype(np.float32) if "bn" in layer.name
                           else scaled_normal(rng, w.shape) for w in layer.get_weights()]
                layer.set_weights(weights)
                reference.get_layer(layer.name).set_weights(weights)
        images = rng.integers(0, 256, (2,) + input_shape).astype(np.float32)
        for ours, theirs in zip(model.predict(images), reference.predict(images, verbose=0)):
            np.testing.assert_allclose(ours, np.asarray(theirs), rtol=1e-4, atol=1e-5)
    # the chapter's compile: two losses weighted 0.8 and 0.2, accuracy on the class output
    assert model._loss_weights == [0.8, 0.2]
    assert [loss.name for loss in model._losses] == ["sparse_categorical_crossentropy", "mean_squared_error"]


def test_localization_heads_on_a_given_base_as_geron_puts_them_on_xception():
    base = applications.geron_xception(input_shape=(71, 71, 3), include_top=False, width=1 / 16, middle_blocks=0)
    model = applications.localization_model(base=base, classes=5, pooling="avg")
    channels = base.output_shape[-1]
    assert model.inputs[0] is base.inputs[0] and model.get_layer("avg_pool").output.shape == (None, channels)
    assert model.count_params() == base.count_params() + (channels * 5 + 5) + (channels * 4 + 4)
    assert [tuple(o.shape) for o in model.outputs] == [(None, 5), (None, 4)]


@pytest.mark.parametrize("input_shape, filters", [((32, 32, 3), (16, 32, 64)), ((64, 64, 3), (4, 4, 8, 8, 8))])
def test_fcn_matches_keras_in_shapes_counts_and_outputs(keras, rng, input_shape, filters):
    model = applications.fcn_segmentation(input_shape=input_shape, classes=3, filters=filters)
    reference = keras_fcn(keras, input_shape, 3, filters)
    assert model.count_params() == reference.count_params()
    assert model.output_shape == (None,) + input_shape[:2] + (3,)
    side = input_shape[0]
    n = len(filters)
    # scores at 1/2**n, fused at 1/2**(n-1) and 1/2**(n-2); five stages: FCN-8s' 1/32, 1/16, 1/8
    assert [model.get_layer(name).output.shape[1] for name in ("score_fr", "upscore2", "upscore4")] == [
        side >> n, side >> (n - 1), side >> (n - 2)]
    for layer in model.layers:  # random weights everywhere: zero skip scores would hide a wiring error
        if layer.get_weights():
            weights = [scaled_normal(rng, w.shape) for w in layer.get_weights()]
            layer.set_weights(weights)
            reference.get_layer(layer.name).set_weights(weights)
    images = rng.integers(0, 256, (2,) + input_shape).astype(np.float32)
    np.testing.assert_allclose(model.predict(images), np.asarray(reference.predict(images, verbose=0)),
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("factor", [2, 4])
def test_bilinear_upsampling_kernel_resizes_as_torch_bilinear_interpolation(rng, factor):
    torch = pytest.importorskip("torch")
    from convlab import layers

    x = rng.standard_normal((1, 6, 5, 2)).astype(np.float32)
    up = layers.Conv2DTranspose(2, 2 * factor, strides=factor, padding="same", use_bias=False)
    up(x)
    up.set_weights([applications.bilinear_upsampling_kernel(factor, 2).astype(np.float32)])
    ours = up(x).numpy()
    theirs = torch.nn.functional.interpolate(torch.from_numpy(x).permute(0, 3, 1, 2), scale_factor=factor,
                                             mode="bilinear", align_corners=False).permute(0, 2, 3, 1).numpy()
    assert ours.shape == theirs.shape == (1, 6 * factor, 5 * factor, 2)
    inner = slice(factor, -factor)  # the borders differ: torch clamps, the transposed conv pads with zeros
    np.testing.assert_allclose(ours[:, inner, inner], theirs[:, inner, inner], rtol=1e-5, atol=1e-5)


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match=r"pooling must be 'avg' or 'flatten', got 'max'"):
        applications.localization_model(pooling="max")
    with pytest.raises(ValueError, match=r"multiples of 8.*\(30, 30, 3\)"):
        applications.fcn_segmentation(input_shape=(30, 30, 3))
    with pytest.raises(ValueError, match=r"filters must be a list of at least 3"):
        applications.fcn_segmentation(filters=(8, 16))
    with pytest.raises(ValueError, match=r"input_shape \(32, 32, 3\) differs from the base's input"):
        base = applications.fcn_segmentation(input_shape=(16, 16, 3), filters=(2, 2, 2))
        applications.localization_model(input_shape=(32, 32, 3), base=base)


# ---------------------------------------------------------------------------- short training runs


def mean_iou(masks, predicted, classes=3):
    """Mean over classes present in either of |true & predicted| / |true | predicted|."""
    values = []
    for c in range(classes):
        union = np.sum((masks == c) | (predicted == c))
        if union:
            values.append(np.sum((masks == c) & (predicted == c)) / union)
    return float(np.mean(values))


def test_localization_model_learns_classes_and_boxes():
    utils.set_seed(0)
    train, _ = shapes.load_data(num_train=256, num_test=0, image_size=32, seed=3, min_size=0.3, max_size=0.6)
    model = applications.localization_model(input_shape=(32, 32, 3), filters=(8, 16, 16), dense_units=32,
                                            optimizer=optimizers.Adam(2e-3))
    boxes = normalized_center_boxes(train.boxes, 32)
    history = model.fit(train.images, [train.labels, boxes], epochs=6, batch_size=8, verbose=0).history
    assert history["loss"][-1] < 0.75 * history["loss"][0]
    assert history["box_loss"][-1] < 0.6 * history["box_loss"][0]
    probabilities, predicted = model.predict(train.images)
    assert np.mean(probabilities.argmax(-1) == train.labels) > 0.55  # chance: 1/3
    # each box against its own image's truth, and (chance) against the next image's
    ious = detection.paired_iou(boxes, predicted, "center")
    shuffled = detection.paired_iou(boxes, np.roll(predicted, 1, axis=0), "center")
    assert ious.mean() > shuffled.mean() + 0.04, (ious.mean(), shuffled.mean())
    for axis in (0, 1):  # the predicted centers follow the true ones
        assert np.corrcoef(boxes[:, axis], predicted[:, axis])[0, 1] > 0.3


def test_fcn_learns_to_separate_shapes_from_background():
    utils.set_seed(0)
    train, _ = shapes.load_data(num_train=96, num_test=0, image_size=24, seed=1, min_size=0.5, max_size=0.8)
    model = applications.fcn_segmentation(input_shape=(24, 24, 3), filters=(8, 16, 16))
    model.compile(optimizer=optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    history = model.fit(train.images, train.masks, epochs=6, batch_size=16, verbose=0).history
    assert history["loss"][-1] < 0.7 * history["loss"][0]
    predicted = model.predict(train.images).argmax(-1)
    everything_background = mean_iou(train.masks, np.full_like(train.masks, shapes.BACKGROUND))
    assert mean_iou(train.masks, predicted) > everything_background + 0.1


# ---------------------------------------------------------------------------- gradients


def test_fcn_gradients_match_finite_differences(float64, rng):
    model = applications.fcn_segmentation(input_shape=(8, 8, 1), classes=2, filters=(2, 2, 2), head_filters=2,
                                          bilinear=False)
    for layer in model.layers:  # random skip scores: zeros would leave their inputs' gradients untested
        if layer.name.startswith("score_pool"):
            layer.set_weights([rng.standard_normal(w.shape) for w in layer.get_weights()])
    assert layer_gradcheck(model, 255 * rng.uniform(size=(1, 8, 8, 1)), max_elements=12, atol=1e-6, rtol=1e-4)


# ---------------------------------------------------------------------------- the jobs


def test_localization_and_fcn_jobs_write_their_results(tmp_path):
    summary = train_localization(out=str(tmp_path / "localization"), quick=True, quiet=True)
    with open(tmp_path / "localization" / "results.json") as file:
        written = json.load(file)
    assert written["test_accuracy"] == summary["test_accuracy"] and 0 <= summary["test_mean_box_iou"] <= 1
    assert os.path.getsize(summary["predictions"]) > 0

    segmentation = {"job": "segmentation", "image_size": 32, "seed": 0, "epochs": 1, "batch_size": 32,
                    "train_samples": 64, "validation_samples": 16, "test_samples": 16, "test_mean_iou": 0.5}
    compare_with = tmp_path / "segmentation.json"
    compare_with.write_text(json.dumps(segmentation))
    summary = train_fcn(out=str(tmp_path / "fcn"), quick=True, quiet=True, compare_with=str(compare_with))
    assert summary["segmentation_net_test_mean_iou"] == 0.5  # same data and budget: read back
    assert 0 <= summary["test_mean_iou"] <= 1 and os.path.exists(tmp_path / "fcn" / "model.keras")


# ---------------------------------------------------------------------------- targets by output name


def test_targets_given_by_output_name_train_as_the_same_targets_in_output_order(rng):
    images = rng.integers(0, 256, (12, 16, 16, 3)).astype(np.float32)
    labels, boxes = rng.integers(0, 3, 12), rng.uniform(size=(12, 4)).astype(np.float32)
    histories = []
    for targets in ([labels, boxes], {"box": boxes, "class": labels}):  # Keras' dict form, in any key order
        utils.set_seed(0)
        model = applications.localization_model(input_shape=(16, 16, 3), filters=(2, 4))
        validation = (images[:4], [t[:4] for t in targets] if isinstance(targets, list)
                      else {name: t[:4] for name, t in targets.items()})
        histories.append(model.fit(images, targets, epochs=2, batch_size=4, validation_data=validation,
                                   verbose=0).history)
        histories.append(model.evaluate(images, targets, verbose=0, return_dict=True))
    assert histories[0] == histories[2] and histories[1] == histories[3]
    with pytest.raises(ValueError, match=r"keys of y must be the output names \['class', 'box'\]; unknown \['boxes'\]"):
        model.fit(images, {"class": labels, "boxes": boxes}, verbose=0)
