"""The detection job: a YOLO-style single-shot detector on the shapes scenes (several
circles, squares and triangles per image), evaluated with mAP@0.5 on held-out scenes.

    train_detection(out, epochs, batch_size, seed, device, quiet) -> dict

Anchors come from k-means on the training boxes' sizes (convlab.detection.kmeans_anchors);
targets from encode_grid_targets; the outputs are decoded with non-max suppression and
scored with the chapter's 11-point interpolated mean Average Precision. The job writes
model.keras, history.png, results.json and predictions.png (test scenes with the predicted
boxes, coloured by class, over the true boxes in white) to `out`.
"""

import json
import os
import time

import numpy as np

from . import detection, layers, optimizers, utils
from ._atomic import atomic_write
from .models import Model

__all__ = ["train_detection", "grid_detector"]

CLASS_COLOURS = np.array([[255, 60, 60], [60, 220, 60], [70, 110, 255]], dtype=np.uint8)  # circle, square, triangle


def grid_detector(image_size=64, num_anchors=3, num_classes=3, widths=(16, 32, 64)):
    """A small single-shot detector: per width, Conv 3x3 same relu + BN + 2x2 max pool (so
    the grid is image_size / 2**len(widths) cells a side), a 3x3 conv, then a 1x1 conv to
    num_anchors * (5 + num_classes) raw outputs per cell."""
    inputs = layers.Input(shape=(image_size, image_size, 3))
    x = layers.Rescaling(1.0 / 255)(inputs)
    for width in widths:
        x = layers.Conv2D(width, 3, padding="same", activation="relu", use_bias=False)(x)
        x = layers.BatchNormalization(momentum=0.9)(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(2 * widths[-1], 3, padding="same", activation="relu")(x)
    outputs = layers.Conv2D(num_anchors * (5 + num_classes), 1, name="grid")(x)
    return Model(inputs, outputs, name="grid_detector")


def _draw_box(image, box, colour, thickness=1):
    top, left, bottom, right = (int(round(v)) for v in box)
    size = image.shape[0]
    top, left = max(0, min(size - 1, top)), max(0, min(size - 1, left))
    bottom, right = max(top + 1, min(size, bottom)), max(left + 1, min(size, right))
    image[top:top + thickness, left:right] = colour
    image[bottom - thickness:bottom, left:right] = colour
    image[top:bottom, left:left + thickness] = colour
    image[top:bottom, right - thickness:right] = colour


def _prediction_montage(images, truths, predictions, path, zoom=3):
    from .viz import write_png

    tiles = []
    for image, true_boxes, (boxes, _, classes) in zip(images, truths, predictions):
        tile = np.kron(image, np.ones((zoom, zoom, 1), dtype=np.uint8))
        for box in true_boxes:
            _draw_box(tile, np.asarray(box) * zoom, np.array([255, 255, 255], dtype=np.uint8))
        for box, label in zip(boxes, classes):
            _draw_box(tile, np.asarray(box) * image.shape[0] * zoom, CLASS_COLOURS[int(label)], thickness=2)
        tiles.append(tile)
    rows = [np.concatenate(tiles[i:i + 4], axis=1) for i in range(0, len(tiles), 4)]
    write_png(np.concatenate(rows, axis=0), path)
    return path


def train_detection(out="convlab-runs/detection", epochs=12, batch_size=32, seed=0, device="cpu", quiet=False,
                    quick=False, image_size=64, num_train=1500, num_test=200, num_anchors=3):
    """Train grid_detector on shapes scenes (1 to 3 shapes of 0.2-0.4 of the side per 64x64
    image) and report mAP@0.5 on held-out scenes. quick=True: a seconds-long run for tests
    (64 scenes, 1 epoch, narrow widths); its mAP means nothing."""
    from .datasets import shapes
    from .jobs import _finish, _prepare

    if quick:
        num_train, num_test, epochs = 64, 16, 1
    widths = (8, 16, 16) if quick else (16, 32, 64)
    verbose = 0 if quiet else 1
    _prepare(out, seed, device)
    train, test = shapes.load_scenes(num_train=num_train, num_test=num_test, image_size=image_size, seed=seed)
    normalized = [b / image_size for b in train.boxes]
    sizes = np.concatenate([b[:, 2:] - b[:, :2] for b in normalized])
    anchors = detection.kmeans_anchors(sizes, num_anchors, seed=seed)
    grid = image_size // 2 ** len(widths)
    y_train = detection.encode_grid_targets(normalized, train.labels, grid, anchors, 3)
    if verbose:
        print(f"shapes scenes: {len(train)} training and {len(test)} test images of {image_size}x{image_size}, "
              f"{len(sizes)} training boxes; anchors (h, w) {np.round(anchors, 3).tolist()}; grid {grid}x{grid}")
    model = grid_detector(image_size, num_anchors, 3, widths)
    model.to(device)
    model.compile(optimizer=optimizers.Adam(1e-3), loss=detection.GridDetectionLoss(num_anchors, 3))
    start = time.perf_counter()
    history = model.fit(train.images, y_train, epochs=epochs, batch_size=batch_size, verbose=verbose)
    seconds = time.perf_counter() - start
    outputs = model.predict(test.images, batch_size=64)
    predictions = detection.decode_grid(outputs, anchors, 3)
    truths = [(b / image_size, l) for b, l in zip(test.boxes, test.labels)]
    mean_ap, per_class = detection.mean_average_precision(predictions, truths, 3, iou_threshold=0.5)
    picture = _prediction_montage(test.images[:8], test.boxes[:8], predictions[:8], os.path.join(out, "predictions.png"))
    if verbose:
        names = ", ".join(f"{train.class_names[c]} {ap:.3f}" for c, ap in per_class.items())
        print(f"test mAP@0.5: {mean_ap:.4f} ({names}), trained in {seconds:.1f}s; boxes drawn in {picture}")
    summary = {"job": "detection", "epochs": epochs, "batch_size": batch_size, "device": device, "seed": seed,
               "image_size": image_size, "grid": grid, "anchors": anchors.tolist(), "train_samples": len(train),
               "test_samples": len(test), "test_map50": mean_ap,
               "test_ap50": {train.class_names[c]: ap for c, ap in per_class.items()}, "train_seconds": seconds,
               "predictions": picture, "history": history.history}
    return _finish(model, history, out, summary, verbose)
