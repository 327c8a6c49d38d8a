"""Two jobs from Géron's chapter 14 on the shapes data (one shape per image):

    train_localization(out, epochs, batch_size, seed, device, quiet) -> dict
        classification and localization: applications.localization_model (a small convnet,
        a softmax class head and a box head, losses weighted 0.8 / 0.2) learns each image's
        class and the box around its shape. Reports the test class accuracy and the mean IoU
        of the predicted with the true boxes (convlab.detection.paired_iou), and writes
        predictions.png: test images with the true box in white and the predicted one in
        the predicted class's colour.

    train_fcn(out, epochs, batch_size, seed, device, quiet) -> dict
        applications.fcn_segmentation (FCN-8s-style skip connections) on the same trimaps,
        split, optimizer and epochs as jobs.train_segmentation (the book's Conv2DTranspose
        net), reporting the test mean IoU over foreground, background and contour; when the
        segmentation job's results.json is found with the same settings, its number is
        printed beside this one.

Both write model.keras, history.png and results.json to `out`, as the other jobs do.
"""

import json
import os
import time

import numpy as np

from . import applications, detection, optimizers
from .detection_job import CLASS_COLOURS, _draw_box

__all__ = ["train_localization", "train_fcn", "normalized_center_boxes"]


def normalized_center_boxes(boxes, image_size):
    """Pixel boxes (ymin, xmin, ymax, xmax), as convlab.datasets.shapes gives them, as the
    localization model's targets: (center_y, center_x, height, width) / image_size."""
    return detection.convert_boxes(np.asarray(boxes, dtype=np.float64) / image_size, "corners", "center") \
        .astype(np.float32)


def _box_montage(images, true_boxes, predicted_boxes, predicted_labels, path, zoom=4, per_row=6):
    """Test images enlarged `zoom` times: true box (pixels, corners) in white, predicted
    box (normalized, center format) in the colour of the predicted class."""
    from .viz import write_png

    size = images.shape[1]
    white = np.array([255, 255, 255], dtype=np.uint8)
    tiles = []
    for image, truth, predicted, label in zip(images, true_boxes, predicted_boxes, predicted_labels):
        tile = np.kron(image, np.ones((zoom, zoom, 1), dtype=np.uint8))
        _draw_box(tile, np.asarray(truth, dtype=np.float64) * zoom, white)
        corners = detection.convert_boxes(predicted, "center", "corners") * size * zoom
        _draw_box(tile, corners, CLASS_COLOURS[int(label)], thickness=2)
        tiles.append(tile)
    while len(tiles) % per_row:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.concatenate(tiles[i:i + per_row], axis=1) for i in range(0, len(tiles), per_row)]
    return write_png(np.concatenate(rows, axis=0), path)


def train_localization(out="convlab-runs/localization", epochs=15, batch_size=32, seed=0, device="cpu", quiet=False,
                       quick=False, image_size=48, num_train=4000, num_validation=200, num_test=300,
                       filters=(16, 32, 64, 128), dense_units=128, min_size=0.3, max_size=0.7):
    """Train localization_model on shapes images of image_size (shapes spanning min_size to
    max_size of the side, as the xception job draws them) with Adam (1e-3, halved every 5
    epochs), targets [labels, normalized center boxes]; report the test class accuracy and
    mean box IoU. 4,000 training images, as the xception job: with 2,000 the class head
    overfits (training accuracy 1.0, test 0.74 after 15 epochs) and the mean box IoU is
    0.53 instead of 0.62.
    quick=True: a seconds-long run for tests (96 images, 1 epoch, narrow widths); its
    numbers mean nothing."""
    from .jobs import _finish, _prepare, _shapes

    if quick:
        num_train, num_validation, num_test, epochs, filters, dense_units = 96, 16, 16, 1, (4, 8, 8, 8), 16
    verbose = 0 if quiet else 1
    _prepare(out, seed, device)
    train, validation, test = _shapes(num_train, num_validation, num_test, image_size, seed, verbose,
                                      min_size=min_size, max_size=max_size)
    # Adam at 1e-3, the rate halved every 5 epochs so the last epochs settle
    steps_per_epoch = -(-len(train) // batch_size)
    optimizer = optimizers.Adam(optimizers.ExponentialDecay(1e-3, decay_steps=5 * steps_per_epoch, decay_rate=0.5))
    model = applications.localization_model(input_shape=(image_size, image_size, 3), classes=len(train.class_names),
                                            filters=filters, dense_units=dense_units, optimizer=optimizer)
    model.to(device)

    def targets(part):
        return [part.labels, normalized_center_boxes(part.boxes, image_size)]

    start = time.perf_counter()
    history = model.fit(train.images, targets(train), epochs=epochs, batch_size=batch_size,
                        validation_data=(validation.images, targets(validation)), verbose=verbose)
    seconds = time.perf_counter() - start
    probabilities, boxes = model.predict(test.images, batch_size=64)
    predicted = probabilities.argmax(axis=-1)
    true_boxes = normalized_center_boxes(test.boxes, image_size)
    ious = detection.paired_iou(true_boxes, boxes, box_format="center")
    accuracy, mean_iou = float(np.mean(predicted == test.labels)), float(ious.mean())
    located = float(np.mean(ious >= 0.5))
    picture = _box_montage(test.images[:12], test.boxes[:12], boxes[:12], predicted[:12],
                           os.path.join(out, "predictions.png"))
    if verbose:
        print(f"test class accuracy: {accuracy:.4f}, mean box IoU: {mean_iou:.4f} ({located:.1%} of the boxes with "
              f"IoU >= 0.5), trained in {seconds:.1f}s; boxes drawn in {picture}")
    summary = {"job": "localization", "epochs": epochs, "batch_size": batch_size, "device": device, "seed": seed,
               "image_size": image_size, "filters": list(filters), "dense_units": dense_units,
               "box_format": "center (cy, cx, h, w), fractions of the image side", "loss_weights": [0.8, 0.2],
               "train_samples": len(train), "validation_samples": len(validation), "test_samples": len(test),
               "test_accuracy": accuracy, "test_mean_box_iou": mean_iou, "test_box_iou_at_least_0.5": located,
               "train_seconds": seconds, "predictions": picture, "history": history.history}
    return _finish(model, history, out, summary, verbose)


def _matching_segmentation_result(path, summary):
    """The segmentation job's test mean IoU from its results.json at `path`, if that run used
    the same data and budget as `summary` (image size, seed, epochs, batch size, samples)."""
    try:
        with open(path, encoding="utf-8") as file:
            other = json.load(file)
    except (OSError, ValueError):
        return None
    keys = ("image_size", "seed", "epochs", "batch_size", "train_samples", "validation_samples", "test_samples")
    if not isinstance(other, dict) or other.get("job") != "segmentation" \
            or any(other.get(key) != summary[key] for key in keys):
        return None
    value = other.get("test_mean_iou")
    return float(value) if isinstance(value, (int, float)) else None


def train_fcn(out="convlab-runs/fcn", epochs=30, batch_size=32, seed=0, device="cpu", quiet=False, quick=False,
              image_size=32, filters=(16, 32, 64), num_train=2000, num_validation=200, num_test=200,
              compare_with="convlab-runs/segmentation/results.json"):
    """fcn_segmentation on the shapes trimaps with jobs.train_segmentation's data (same
    seed, sizes, split and shapes of 0.3-0.6 of the side), optimizer (rmsprop, its rate
    halved every 8 epochs), loss and epochs; reports the test mean IoU. compare_with: the
    segmentation job's results.json, whose mean IoU is printed too when its run matches.
    quick=True: a seconds-long run for tests (64 images, 1 epoch, narrow widths)."""
    from .jobs import _finish, _segment_shapes

    if quick:
        num_train, num_validation, num_test, epochs, filters = 64, 16, 16, 1, (4, 8, 8)
    verbose = 0 if quiet else 1
    model, history, summary, picture = _segment_shapes(
        "fcn", lambda: applications.fcn_segmentation(input_shape=(image_size, image_size, 3), classes=3,
                                                     filters=filters),
        out, seed, device, epochs, batch_size, verbose, image_size, filters, num_train, num_validation, num_test)
    summary.update(parameters=model.count_params(), predictions=picture)
    other = _matching_segmentation_result(compare_with, summary) if compare_with else None
    summary["segmentation_net_test_mean_iou"] = other
    if verbose:
        if other is None:
            print(f"(run `python -m convlab train segmentation` with the same options to compare: its mean IoU is "
                  f"read from {compare_with})")
        else:
            print(f"the Conv2DTranspose segmentation net's test mean IoU on the same data: {other:.4f} "
                  f"(from {compare_with})")
    return _finish(model, history, out, summary, verbose)
