"""Object detection as Géron's chapter 14 builds it up: boxes and their IoU, non-max
suppression, precision/recall and mean Average Precision, anchor boxes from k-means, a
YOLO-style grid encoding with its loss and decoding, and the Dense-to-Conv conversion that
turns a classifier into a fully convolutional net (FCN).

Boxes are numpy arrays whose last axis holds four numbers, in one of two formats:

    "corners"  (ymin, xmin, ymax, xmax)       as convlab.datasets.shapes gives them
    "center"   (center_y, center_x, height, width)

in any unit (pixels, or fractions of the image side: "normalized"), the same for all boxes
compared. A box's area is (ymax - ymin) * (xmax - xmin); an empty box has IoU 0 with
everything.
"""

import numpy as np

from . import layers, losses, metrics, ops
from .models import Model

__all__ = [
    "convert_boxes", "box_iou", "paired_iou", "BoxIoU", "non_max_suppression", "precision_recall_curve",
    "average_precision", "mean_average_precision", "kmeans_anchors", "encode_grid_targets", "decode_grid",
    "GridDetectionLoss", "dense_to_conv",
]

BOX_FORMATS = ("corners", "center")


def _boxes(boxes, name):
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim < 1 or boxes.shape[-1] != 4:
        raise ValueError(f"{name} must have 4 numbers per box on the last axis, got shape {boxes.shape}")
    return boxes


def _check_format(box_format):
    if box_format not in BOX_FORMATS:
        raise ValueError(f"box_format must be one of {BOX_FORMATS}, got {box_format!r}")


def convert_boxes(boxes, source, target):
    """Boxes from format `source` to format `target` ("corners" or "center")."""
    _check_format(source)
    _check_format(target)
    boxes = _boxes(boxes, "boxes")
    if source == target:
        return boxes.copy()
    if source == "center":
        cy, cx, h, w = np.moveaxis(boxes, -1, 0)
        return np.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], axis=-1)
    ymin, xmin, ymax, xmax = np.moveaxis(boxes, -1, 0)
    return np.stack([(ymin + ymax) / 2, (xmin + xmax) / 2, ymax - ymin, xmax - xmin], axis=-1)


def _corners(boxes, box_format, name):
    _check_format(box_format)
    boxes = _boxes(boxes, name)
    return boxes if box_format == "corners" else convert_boxes(boxes, "center", "corners")


def _iou(a, b):
    """IoU of corner boxes a and b that broadcast against each other (last axis 4)."""
    height = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    width = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    intersection = height * width

    def area(box):
        return np.clip(box[..., 2] - box[..., 0], 0, None) * np.clip(box[..., 3] - box[..., 1], 0, None)

    union = area(a) + area(b) - intersection
    return np.where(union > 0, intersection / np.where(union > 0, union, 1), 0.0)


def box_iou(boxes_a, boxes_b, box_format="corners"):
    """Intersection over union of every box of boxes_a (n, 4) with every box of boxes_b
    (m, 4): an (n, m) array."""
    a = _corners(boxes_a, box_format, "boxes_a").reshape(-1, 4)
    b = _corners(boxes_b, box_format, "boxes_b").reshape(-1, 4)
    return _iou(a[:, None, :], b[None, :, :])


def paired_iou(boxes_a, boxes_b, box_format="corners"):
    """IoU of boxes_a[i] with boxes_b[i] (same shapes (..., 4)): an array of shape (...)."""
    a, b = _corners(boxes_a, box_format, "boxes_a"), _corners(boxes_b, box_format, "boxes_b")
    if a.shape != b.shape:
        raise ValueError(f"paired_iou: boxes_a and boxes_b must have one shape, got {a.shape} and {b.shape}")
    return _iou(a, b)


class BoxIoU(metrics.Metric):
    """The mean IoU of predicted boxes with their true boxes, one pair per sample (a
    localization model's box head): y_true and y_pred (batch, 4), in box_format."""

    name = "iou"

    def __init__(self, name=None, box_format="corners"):
        _check_format(box_format)
        self.box_format = box_format
        super().__init__(name)

    def update_state(self, y_true, y_pred):
        values = paired_iou(metrics._numpy(y_true), metrics._numpy(y_pred), self.box_format)
        self.total += float(values.sum())
        self.count += values.size

    def get_config(self):
        return {"name": self.name, "box_format": self.box_format}


def non_max_suppression(boxes, scores, classes=None, iou_threshold=0.5, score_threshold=0.0, max_outputs=None,
                        box_format="corners"):
    """Géron's recipe, per class: drop boxes scoring below score_threshold; then, best score
    first, keep a box and drop every remaining box of its class that overlaps it with IoU
    above iou_threshold. Returns the indices of the kept boxes, best score first (at most
    max_outputs). classes=None treats all boxes as one class."""
    boxes = _corners(boxes, box_format, "boxes").reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(scores) != len(boxes):
        raise ValueError(f"non_max_suppression: {len(boxes)} boxes but {len(scores)} scores")
    classes = np.zeros(len(boxes), dtype=np.int64) if classes is None else np.asarray(classes).reshape(-1)
    if len(classes) != len(boxes):
        raise ValueError(f"non_max_suppression: {len(boxes)} boxes but {len(classes)} classes")
    if not 0 <= iou_threshold <= 1:
        raise ValueError(f"non_max_suppression: iou_threshold must be in [0, 1], got {iou_threshold!r}")
    candidates = np.flatnonzero(scores >= score_threshold)
    candidates = candidates[np.argsort(-scores[candidates], kind="stable")]
    keep = []
    suppressed = np.zeros(len(boxes), dtype=bool)
    overlaps = box_iou(boxes[candidates], boxes[candidates]) if len(candidates) else np.zeros((0, 0))
    for position, index in enumerate(candidates):
        if suppressed[index]:
            continue
        keep.append(int(index))
        if max_outputs is not None and len(keep) == max_outputs:
            break
        later = candidates[position + 1:]
        same_class = classes[later] == classes[index]
        suppressed[later[same_class & (overlaps[position, position + 1:] > iou_threshold)]] = True
    return np.array(keep, dtype=np.int64)


def _detections_of_class(predictions, class_id):
    """(image index, score, box) of every predicted box of class_id, best score first (ties: input order)."""
    found = []
    for image, (boxes, scores, classes) in enumerate(predictions):
        boxes, scores, classes = (np.asarray(v) for v in (boxes, scores, classes))
        for box, score in zip(boxes[classes == class_id], scores[classes == class_id]):
            found.append((image, float(score), np.asarray(box, dtype=np.float64)))
    order = sorted(range(len(found)), key=lambda i: -found[i][1])
    return [found[i] for i in order]


def precision_recall_curve(predictions, ground_truths, class_id, iou_threshold=0.5, box_format="corners"):
    """Precision and recall of one class after each detection, best score first.

    predictions: one (boxes (k, 4), scores (k,), classes (k,)) per image.
    ground_truths: one (boxes (g, 4), classes (g,)) per image.
    A detection is a true positive when its best-overlapping true box of its class in its
    image has IoU >= iou_threshold and no better-scored detection claimed that box already
    (Pascal VOC's matching rule); otherwise it is a false positive.
    Returns (precision, recall, number of true boxes), the first two of length = detections.
    """
    if len(predictions) != len(ground_truths):
        raise ValueError(f"precision_recall_curve: {len(predictions)} images of predictions but "
                         f"{len(ground_truths)} of ground truths")
    truths = []
    for boxes, classes in ground_truths:
        boxes = _corners(np.asarray(boxes, dtype=np.float64).reshape(-1, 4), box_format, "ground truth boxes")
        truths.append(boxes[np.asarray(classes).reshape(-1) == class_id])
    total = sum(len(t) for t in truths)
    claimed = [np.zeros(len(t), dtype=bool) for t in truths]
    hits = []
    for image, _, box in _detections_of_class(predictions, class_id):
        box = _corners(box, box_format, "predicted boxes")
        if len(truths[image]) == 0:
            hits.append(False)
            continue
        overlaps = _iou(box[None, :], truths[image])
        best = int(np.argmax(overlaps))
        if overlaps[best] >= iou_threshold and not claimed[image][best]:
            claimed[image][best] = True
            hits.append(True)
        else:
            hits.append(False)
    true_positives = np.cumsum(hits, dtype=np.float64)
    detections = np.arange(1, len(hits) + 1, dtype=np.float64)
    precision = true_positives / detections if len(hits) else np.zeros(0)
    recall = true_positives / total if total else np.zeros(len(hits))
    return precision, recall, total


def average_precision(precision, recall, recall_levels=11):
    """The chapter's Average Precision: the mean, over recall levels r = 0, 0.1, ..., 1
    (recall_levels of them), of the interpolated precision max{precision at recall >= r}
    (0 where no point reaches recall r)."""
    precision, recall = np.asarray(precision, dtype=np.float64), np.asarray(recall, dtype=np.float64)
    if precision.shape != recall.shape:
        raise ValueError(f"average_precision: precision and recall must have one shape, got {precision.shape} "
                         f"and {recall.shape}")
    if isinstance(recall_levels, bool) or not isinstance(recall_levels, int) or recall_levels < 2:
        raise ValueError(f"average_precision: recall_levels must be an int >= 2, got {recall_levels!r}")
    levels = np.linspace(0, 1, recall_levels)
    interpolated = [precision[recall >= r - 1e-12].max() if np.any(recall >= r - 1e-12) else 0.0 for r in levels]
    return float(np.mean(interpolated))


def mean_average_precision(predictions, ground_truths, num_classes, iou_threshold=0.5, recall_levels=11,
                           box_format="corners"):
    """mAP@iou_threshold: the mean of average_precision over the classes that have true
    boxes. Returns (mAP, {class: AP})."""
    per_class = {}
    for class_id in range(num_classes):
        precision, recall, total = precision_recall_curve(predictions, ground_truths, class_id, iou_threshold,
                                                          box_format)
        if total:
            per_class[class_id] = average_precision(precision, recall, recall_levels)
    return (float(np.mean(list(per_class.values()))) if per_class else 0.0), per_class


# ---------------------------------------------------------------------------- anchors and the grid


def _size_iou(sizes, anchors):
    """IoU of (height, width) pairs placed on one center: (n, k)."""
    inter = np.minimum(sizes[:, None, 0], anchors[None, :, 0]) * np.minimum(sizes[:, None, 1], anchors[None, :, 1])
    union = sizes[:, None, 0] * sizes[:, None, 1] + anchors[None, :, 0] * anchors[None, :, 1] - inter
    return inter / union


def kmeans_anchors(sizes, k, seed=0, iterations=100):
    """Anchor box sizes as YOLOv2 chooses them (the chapter's "anchor boxes ... found by
    k-means"): k-means on the training boxes' (height, width) with distance 1 - IoU (boxes on
    one center), starting from k distinct boxes drawn with `seed`. Returns (k, 2), sorted by area."""
    sizes = np.asarray(sizes, dtype=np.float64)
    if sizes.ndim != 2 or sizes.shape[1] != 2 or np.any(sizes <= 0):
        raise ValueError(f"kmeans_anchors: sizes must be (n, 2) positive (height, width) pairs, got shape "
                         f"{sizes.shape}")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= len(sizes):
        raise ValueError(f"kmeans_anchors: k must be an int in [1, {len(sizes)}] (the number of boxes), got {k!r}")
    rng = np.random.default_rng(seed)
    anchors = sizes[rng.choice(len(sizes), size=k, replace=False)]
    for _ in range(iterations):
        assignment = np.argmax(_size_iou(sizes, anchors), axis=1)
        updated = np.array([sizes[assignment == j].mean(axis=0) if np.any(assignment == j) else anchors[j]
                            for j in range(k)])
        if np.allclose(updated, anchors):
            break
        anchors = updated
    return anchors[np.argsort(anchors[:, 0] * anchors[:, 1])]


def encode_grid_targets(boxes, labels, grid_size, anchors, num_classes):
    """YOLO-style targets: (n, S, S, A * (5 + C)) for n images, an S x S grid and A anchors.

    boxes: one (k, 4) array per image, normalized corners (fractions of the side). Each box
    goes to the cell holding its center and to the anchor whose size it overlaps most; its
    slot holds [1 (objectness), ty, tx (the center's offset inside the cell, in [0, 1)),
    log(h / anchor_h), log(w / anchor_w), one-hot class]. Empty slots are all zero. (Two
    boxes in one slot: the later one wins; the shapes scenes never put two there in practice.)
    """
    anchors = np.asarray(anchors, dtype=np.float64)
    count, channels = len(anchors), 5 + num_classes
    targets = np.zeros((len(boxes), grid_size, grid_size, count, channels), dtype=np.float32)
    for image, (image_boxes, image_labels) in enumerate(zip(boxes, labels)):
        image_boxes = _boxes(np.asarray(image_boxes).reshape(-1, 4), "boxes")
        if not len(image_boxes):
            continue
        centers = convert_boxes(image_boxes, "corners", "center")
        best = np.argmax(_size_iou(centers[:, 2:], anchors), axis=1)
        for (cy, cx, h, w), anchor, label in zip(centers, best, np.asarray(image_labels).reshape(-1)):
            row, column = min(int(cy * grid_size), grid_size - 1), min(int(cx * grid_size), grid_size - 1)
            slot = targets[image, row, column, anchor]
            slot[:] = 0
            slot[0] = 1
            slot[1:3] = cy * grid_size - row, cx * grid_size - column
            slot[3:5] = np.log(h / anchors[anchor, 0]), np.log(w / anchors[anchor, 1])
            slot[5 + int(label)] = 1
    return targets.reshape(len(boxes), grid_size, grid_size, count * channels)


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def decode_grid(outputs, anchors, num_classes, score_threshold=0.3, iou_threshold=0.45, max_outputs=20):
    """Boxes from a grid detector's raw outputs (n, S, S, A * (5 + C)): for each slot, the
    center (row + sigmoid(ty), column + sigmoid(tx)) / S, size anchor * exp(th, tw), class the
    argmax of the class scores, score = sigmoid(objectness) * class probability; then
    non_max_suppression per class. Returns one (boxes (k, 4) normalized corners, scores (k,),
    classes (k,)) per image."""
    outputs = np.asarray(outputs, dtype=np.float64)
    anchors = np.asarray(anchors, dtype=np.float64)
    n, grid, _, _ = outputs.shape
    outputs = outputs.reshape(n, grid, grid, len(anchors), 5 + num_classes)
    rows, columns = np.meshgrid(np.arange(grid), np.arange(grid), indexing="ij")
    cy = (rows[..., None] + _sigmoid(outputs[..., 1])) / grid
    cx = (columns[..., None] + _sigmoid(outputs[..., 2])) / grid
    h = anchors[:, 0] * np.exp(np.clip(outputs[..., 3], -10, 10))
    w = anchors[:, 1] * np.exp(np.clip(outputs[..., 4], -10, 10))
    boxes = convert_boxes(np.stack([cy, cx, h, w], axis=-1), "center", "corners")
    logits = outputs[..., 5:] - outputs[..., 5:].max(axis=-1, keepdims=True)
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    classes = probabilities.argmax(axis=-1)
    scores = _sigmoid(outputs[..., 0]) * probabilities.max(axis=-1)
    results = []
    for image in range(n):
        b, s, c = boxes[image].reshape(-1, 4), scores[image].reshape(-1), classes[image].reshape(-1)
        keep = non_max_suppression(b, s, c, iou_threshold, score_threshold, max_outputs)
        results.append((np.clip(b[keep], 0, 1), s[keep], c[keep]))
    return results


class GridDetectionLoss(losses.Loss):
    """The YOLO-style loss on raw grid outputs against encode_grid_targets' targets, summed over
    slots and averaged over images:

        objectness   binary crossentropy from logits in every slot (slots without a box
                     weighted by no_object_weight, since they outnumber the others)
        box          in slots with a box, coordinate_weight * squared errors of
                     sigmoid(ty), sigmoid(tx) and of th, tw against the targets
        class        in slots with a box, crossentropy of the class softmax
    """

    name = "grid_detection_loss"

    def __init__(self, num_anchors, num_classes, coordinate_weight=5.0, no_object_weight=0.5, name=None):
        super().__init__(name)
        self.num_anchors, self.num_classes = int(num_anchors), int(num_classes)
        self.coordinate_weight, self.no_object_weight = float(coordinate_weight), float(no_object_weight)

    def check_targets(self, y_true, output_shape):
        losses._check_same_shape(self.name, (None,) + tuple(np.shape(y_true)[1:]), output_shape)

    def call(self, y_true, y_pred):
        n, grid = y_pred.shape[0], y_pred.shape[1]
        shape = (n, grid, grid, self.num_anchors, 5 + self.num_classes)
        target = losses._as_target(y_true, y_pred.data).astype(y_pred.dtype, copy=False).reshape(shape)
        xp = y_pred.xp
        prediction = ops.reshape(y_pred, shape)
        present = target[..., 0]
        weight = xp.where(present > 0, 1.0, self.no_object_weight).astype(target.dtype)
        z = prediction[..., 0]
        # log(1 + exp(-|z|)) + max(z, 0) - z * t: the stable binary crossentropy from logits
        objectness = (ops.log(ops.exp(-ops.abs(z)) + 1.0) + ops.relu(z) - z * present) * weight
        offsets = ops.sigmoid(prediction[..., 1:3]) - target[..., 1:3]
        sizes = prediction[..., 3:5] - target[..., 3:5]
        box = ((offsets * offsets).sum(axis=-1) + (sizes * sizes).sum(axis=-1)) * (present * self.coordinate_weight)
        classes = -(ops.log_softmax(prediction[..., 5:], axis=-1) * target[..., 5:]).sum(axis=-1)
        return (objectness + box + classes * present).sum() / n

    def get_config(self):
        return {"name": self.name, "num_anchors": self.num_anchors, "num_classes": self.num_classes,
                "coordinate_weight": self.coordinate_weight, "no_object_weight": self.no_object_weight}


# ---------------------------------------------------------------------------- FCN


def dense_to_conv(model, input_shape=(None, None, None)):
    """The fully convolutional twin of a classifier that ends Flatten -> Dense [-> Dense ...]:
    the first Dense becomes a "valid" Conv2D whose kernel is the feature map's size (its
    weights reshaped from (h * w * c, units) to (h, w, c, units), Flatten's row-major order),
    every later Dense a 1x1 Conv2D, with the same weights and activations; the layers before
    Flatten are copied with their weights. On the training size the output is the same
    numbers, shaped (n, 1, 1, units); on a larger image, a grid of predictions, one per
    position of the original input window (the stride is the product of the base's strides).

    model: a Sequential or a functional chain (each layer feeds the next). input_shape: the
    new input's (height, width, channels); None lets the size vary.
    """
    chain = [layer for layer in model.layers if not isinstance(layer, layers.InputLayer)]
    kinds = [type(layer).__name__ for layer in chain]
    if "Flatten" not in kinds or not all(k in ("Dense", "Dropout") for k in kinds[kinds.index("Flatten") + 1:]) \
            or "Dense" not in kinds[kinds.index("Flatten") + 1:]:
        raise ValueError(f"dense_to_conv: expected a model ending Flatten -> Dense layers, got the layers {kinds}")
    flatten_at = kinds.index("Flatten")
    feature_map = chain[flatten_at].input.shape[1:]
    if None in feature_map:
        raise ValueError(f"dense_to_conv: the feature map before Flatten must have a known size, got {feature_map}")
    channels = model.inputs[0].shape[-1] if input_shape[-1] is None else input_shape[-1]
    inputs = layers.Input(shape=tuple(input_shape[:-1]) + (channels,))
    x = inputs
    copies = []
    for layer in chain[:flatten_at]:
        twin = type(layer).from_config(dict(layer.get_config(), name=f"{layer.name}_fcn"))
        x = twin(x)
        copies.append((twin, layer.get_weights()))
    kernel_size = feature_map[:2]
    for layer in chain[flatten_at + 1:]:
        if isinstance(layer, layers.Dropout):
            continue
        kernel, *bias = layer.get_weights()
        in_channels = kernel.shape[0] // (kernel_size[0] * kernel_size[1])
        conv = layers.Conv2D(layer.units, kernel_size, activation=layer.activation, use_bias=layer.use_bias,
                             name=f"{layer.name}_conv")
        x = conv(x)
        copies.append((conv, [kernel.reshape(kernel_size[0], kernel_size[1], in_channels, layer.units)] + bias))
        kernel_size = (1, 1)
    for twin, weights in copies:
        twin.set_weights(weights)
    return Model(inputs, x, name=f"{model.name}_fcn")
