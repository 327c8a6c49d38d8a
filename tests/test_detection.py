"""convlab.detection against hand-computed cases and brute-force pure-Python references
written here; the shapes scenes; the grid encoding round trip; the FCN conversion; and a
quick run of the detection job."""

import numpy as np
import pytest

import convlab
from convlab import detection, layers
from convlab.datasets import shapes


# ---------------------------------------------------------------------------- IoU


def iou_by_hand(a, b):
    """Pure Python, corners (ymin, xmin, ymax, xmax)."""
    height = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    width = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = height * width
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def test_iou_hand_cases():
    # two 2x2 squares overlapping in a 1x1 corner: 1 / (4 + 4 - 1)
    assert detection.box_iou([[0, 0, 2, 2]], [[1, 1, 3, 3]])[0, 0] == pytest.approx(1 / 7)
    assert detection.box_iou([[0, 0, 2, 2]], [[0, 0, 2, 2]])[0, 0] == 1.0
    assert detection.box_iou([[0, 0, 1, 1]], [[1, 1, 2, 2]])[0, 0] == 0.0  # touching corners
    # a box inside another: area ratio 1/4
    assert detection.box_iou([[0, 0, 4, 4]], [[1, 1, 3, 3]])[0, 0] == pytest.approx(0.25)
    # same boxes in center format (cy, cx, h, w)
    assert detection.box_iou([[1, 1, 2, 2]], [[2, 2, 2, 2]], box_format="center")[0, 0] == pytest.approx(1 / 7)


def test_iou_matrix_matches_pure_python(rng):
    a = np.sort(rng.uniform(0, 10, (7, 2, 2)), axis=1).transpose(0, 2, 1).reshape(7, 4)[:, [0, 1, 2, 3]]
    a = np.concatenate([np.minimum(a[:, :2], a[:, 2:]), np.maximum(a[:, :2], a[:, 2:])], axis=1)
    b = a[::-1] + rng.uniform(-1, 1, (7, 4)) * [[0, 0, 0, 0]] + rng.uniform(0, 1, (7, 1))
    expected = [[iou_by_hand(x, y) for y in b] for x in a]
    np.testing.assert_allclose(detection.box_iou(a, b), expected, rtol=1e-12)
    np.testing.assert_allclose(detection.paired_iou(a, b), np.diag(expected), rtol=1e-12)
    centers = detection.convert_boxes(a, "corners", "center")
    np.testing.assert_allclose(detection.convert_boxes(centers, "center", "corners"), a, rtol=1e-12)
    np.testing.assert_allclose(detection.box_iou(centers, detection.convert_boxes(b, "corners", "center"),
                                                 box_format="center"), expected, rtol=1e-10)


def test_box_iou_metric_averages_pairs():
    metric = detection.BoxIoU()
    metric.update_state([[0, 0, 2, 2], [0, 0, 4, 4]], [[1, 1, 3, 3], [1, 1, 3, 3]])
    assert metric.result() == pytest.approx((1 / 7 + 0.25) / 2)


def test_iou_rejects_boxes_without_four_numbers():
    with pytest.raises(ValueError, match=r"boxes_a must have 4 numbers per box on the last axis, got shape \(2, 3\)"):
        detection.box_iou(np.zeros((2, 3)), np.zeros((1, 4)))
    with pytest.raises(ValueError, match=r"box_format must be one of \('corners', 'center'\), got 'xywh'"):
        detection.box_iou(np.zeros((1, 4)), np.zeros((1, 4)), box_format="xywh")


# ---------------------------------------------------------------------------- NMS


def nms_brute_force(boxes, scores, classes, iou_threshold, score_threshold):
    """Repeat: take the best remaining box, drop its class-mates overlapping it too much."""
    remaining = [i for i in range(len(boxes)) if scores[i] >= score_threshold]
    kept = []
    while remaining:
        best = max(remaining, key=lambda i: (scores[i], -i))
        kept.append(best)
        remaining = [i for i in remaining if i != best and not (
            classes[i] == classes[best] and iou_by_hand(boxes[i], boxes[best]) > iou_threshold)]
    return kept


def test_nms_hand_case():
    boxes = [[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9]]
    scores = [0.9, 0.8, 0.7, 0.95]
    # box 3 (best) suppresses 0 (IoU 0.9) and 1 (IoU 81/119 = 0.68); box 2 stands alone
    assert detection.non_max_suppression(boxes, scores, iou_threshold=0.5).tolist() == [3, 2]
    # per class: box 1 in another class survives
    assert detection.non_max_suppression(boxes, scores, [0, 1, 0, 0], iou_threshold=0.5).tolist() == [3, 1, 2]
    assert detection.non_max_suppression(boxes, scores, score_threshold=0.75).tolist() == [3]


@pytest.mark.parametrize("seed", range(5))
def test_nms_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    corners = rng.uniform(0, 20, (30, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(2, 8, (30, 2))], axis=1)
    scores, classes = rng.uniform(size=30), rng.integers(0, 3, 30)
    kept = detection.non_max_suppression(boxes, scores, classes, iou_threshold=0.3, score_threshold=0.2)
    assert kept.tolist() == nms_brute_force(boxes.tolist(), scores.tolist(), classes.tolist(), 0.3, 0.2)


# ---------------------------------------------------------------------------- precision, recall, mAP


def ap_brute_force(predictions, truths, class_id, threshold):
    """Pascal VOC matching and the chapter's 11-point interpolation, in loops."""
    detections = [(s, i, list(b)) for i, (bs, ss, cs) in enumerate(predictions)
                  for b, s, c in zip(bs, ss, cs) if c == class_id]
    detections.sort(key=lambda d: -d[0])
    gts = [[list(b) for b, c in zip(bs, cs) if c == class_id] for bs, cs in truths]
    total = sum(len(g) for g in gts)
    used = [[False] * len(g) for g in gts]
    tp, points = 0, []
    for rank, (_, image, box) in enumerate(detections, start=1):
        best, best_iou = None, -1.0
        for j, gt in enumerate(gts[image]):
            value = iou_by_hand(box, gt)
            if value > best_iou:
                best, best_iou = j, value
        if best is not None and best_iou >= threshold and not used[image][best]:
            used[image][best] = True
            tp += 1
        points.append((tp / rank, tp / total))
    levels = [i / 10 for i in range(11)]
    return sum(max([p for p, r in points if r >= level - 1e-12], default=0.0) for level in levels) / 11


def test_average_precision_hand_case():
    # one image, two true boxes of class 0; three detections: hit, miss, hit
    truths = [(np.array([[0, 0, 10, 10], [20, 20, 30, 30]]), np.array([0, 0]))]
    predictions = [(np.array([[0, 0, 10, 10], [50, 50, 60, 60], [20, 20, 30, 31]]), np.array([0.9, 0.8, 0.7]),
                    np.array([0, 0, 0]))]
    precision, recall, total = detection.precision_recall_curve(predictions, truths, 0)
    np.testing.assert_allclose(precision, [1, 1 / 2, 2 / 3])
    np.testing.assert_allclose(recall, [0.5, 0.5, 1])
    assert total == 2
    # levels 0..0.5 (6 of them): max precision at recall >= r is 1; levels 0.6..1 (5): 2/3
    assert detection.average_precision(precision, recall) == pytest.approx((6 * 1 + 5 * 2 / 3) / 11)


@pytest.mark.parametrize("seed", range(4))
def test_mean_average_precision_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    truths, predictions = [], []
    for _ in range(6):
        count = rng.integers(1, 4)
        corners = rng.uniform(0, 40, (count, 2))
        boxes = np.concatenate([corners, corners + rng.uniform(5, 15, (count, 2))], axis=1)
        labels = rng.integers(0, 3, count)
        truths.append((boxes, labels))
        guesses = np.concatenate([boxes + rng.normal(0, 2, boxes.shape), rng.uniform(0, 50, (2, 4))])
        guesses = np.concatenate([np.minimum(guesses[:, :2], guesses[:, 2:]), np.maximum(guesses[:, :2],
                                                                                         guesses[:, 2:])], axis=1)
        guess_labels = np.concatenate([np.where(rng.uniform(size=count) < 0.8, labels, (labels + 1) % 3),
                                       rng.integers(0, 3, 2)])
        predictions.append((guesses, rng.uniform(size=len(guesses)), guess_labels))
    mean_ap, per_class = detection.mean_average_precision(predictions, truths, 3, iou_threshold=0.5)
    expected = {c: ap_brute_force(predictions, truths, c, 0.5) for c in range(3)
                if any(np.any(l == c) for _, l in truths)}
    assert per_class == pytest.approx(expected)
    assert mean_ap == pytest.approx(np.mean(list(expected.values())))


# ---------------------------------------------------------------------------- scenes, anchors, the grid


def test_single_shape_data_is_unchanged_by_the_scenes_extension():
    """generate() still draws from its own stream: recomputing an image with the documented
    recipe (default_rng([seed, part, i]) through the private _draw) gives the same bits."""
    data = shapes.generate(3, image_size=48, seed=5)
    centers = np.arange(48, dtype=np.float32) + np.float32(0.5)
    rows, cols = np.meshgrid(centers, centers, indexing="ij")
    image, label, box, mask = shapes._draw(np.random.default_rng([5, 0, 2]), 48, rows, cols, 0.2, 0.6, 1.5)
    np.testing.assert_array_equal(data.images[2], image)
    assert (data.labels[2], tuple(data.boxes[2])) == (label, box)


def test_scenes_boxes_are_the_tight_boxes_of_non_overlapping_shapes():
    scenes = shapes.generate_scenes(20, image_size=48, seed=1, min_shapes=2, max_shapes=3)
    assert sum(len(b) for b in scenes.boxes) >= 40
    for boxes, labels, mask in zip(scenes.boxes, scenes.labels, scenes.masks):
        assert len(boxes) == len(labels)
        shape_pixels = mask != shapes.BACKGROUND
        covered = np.zeros_like(shape_pixels)
        for top, left, bottom, right in boxes:
            inside = shape_pixels[top:bottom, left:right]
            # tight: every side of the box touches a shape pixel
            assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
            covered[top:bottom, left:right] = True
        assert not (shape_pixels & ~covered).any()  # every shape pixel lies in some box
        assert detection.box_iou(boxes, boxes)[~np.eye(len(boxes), dtype=bool)].max(initial=0) == 0  # disjoint


def test_kmeans_anchors_find_two_obvious_clusters():
    rng = np.random.default_rng(0)
    sizes = np.concatenate([rng.normal([0.1, 0.1], 0.005, (50, 2)), rng.normal([0.4, 0.2], 0.01, (50, 2))])
    anchors = detection.kmeans_anchors(sizes, 2, seed=0)
    np.testing.assert_allclose(anchors, [sizes[:50].mean(0), sizes[50:].mean(0)], rtol=1e-10)


def test_grid_encoding_decodes_back_to_the_boxes():
    anchors = np.array([[0.2, 0.2], [0.4, 0.3]])
    boxes = [np.array([[0.1, 0.1, 0.3, 0.32], [0.5, 0.55, 0.9, 0.85]]), np.zeros((0, 4))]
    labels = [np.array([2, 1]), np.zeros(0, dtype=np.int64)]
    targets = detection.encode_grid_targets(boxes, labels, 4, anchors, 3)
    assert targets.shape == (2, 4, 4, 2 * 8)
    # logits that reproduce the targets: objectness +-20, offsets through the inverse sigmoid
    slots = targets.reshape(2, 4, 4, 2, 8).astype(np.float64)
    logits = slots.copy()
    logits[..., 0] = np.where(slots[..., 0] > 0, 20, -20)
    offsets = np.clip(slots[..., 1:3], 1e-9, 1 - 1e-9)
    logits[..., 1:3] = np.log(offsets / (1 - offsets))
    logits[..., 5:] = slots[..., 5:] * 20
    decoded = detection.decode_grid(logits.reshape(2, 4, 4, 16), anchors, 3, score_threshold=0.5)
    order = np.argsort(decoded[0][0][:, 0])
    np.testing.assert_allclose(decoded[0][0][order], boxes[0], atol=1e-6)
    assert decoded[0][2][order].tolist() == [2, 1]
    assert len(decoded[1][0]) == 0


def test_grid_loss_is_zero_for_perfect_logits_up_to_the_saturation():
    anchors = np.array([[0.25, 0.25]])
    targets = detection.encode_grid_targets([np.array([[0.1, 0.1, 0.35, 0.35]])], [np.array([0])], 2, anchors, 2)
    slots = targets.reshape(1, 2, 2, 1, 7).astype(np.float64)
    perfect = slots.copy()
    perfect[..., 0] = np.where(slots[..., 0] > 0, 30, -30)
    offsets = np.clip(slots[..., 1:3], 1e-12, 1 - 1e-12)
    perfect[..., 1:3] = np.log(offsets / (1 - offsets))
    perfect[..., 5:] = slots[..., 5:] * 60 - 30
    loss = detection.GridDetectionLoss(1, 2)(targets, convlab.Tensor(perfect.reshape(1, 2, 2, 7)))
    assert float(loss) < 1e-10
    worse = perfect.copy()
    worse[0, 0, 0, 0, 3] += 0.5  # log-height off by 0.5 in the one box: coordinate_weight * 0.25
    loss = detection.GridDetectionLoss(1, 2)(targets, convlab.Tensor(worse.reshape(1, 2, 2, 7)))
    assert float(loss) == pytest.approx(5 * 0.25, rel=1e-6)


# ---------------------------------------------------------------------------- FCN


def test_dense_to_conv_gives_the_same_outputs_and_then_a_grid(rng):
    convlab.utils.set_seed(0)
    model = convlab.Sequential([
        layers.Conv2D(4, 3, activation="relu", input_shape=(12, 12, 3)), layers.MaxPooling2D(2),
        layers.Conv2D(6, 3, activation="relu"), layers.Flatten(), layers.Dense(8, activation="relu"),
        layers.Dropout(0.5), layers.Dense(3, activation="softmax")])
    fcn = detection.dense_to_conv(model)
    x = rng.uniform(size=(2, 12, 12, 3)).astype(np.float32)
    np.testing.assert_allclose(fcn(x).numpy().reshape(2, 3), model(x).numpy(), rtol=1e-5, atol=1e-6)
    # a 20x20 image: the 12x12 window slides by 2 (the pool's stride), (20 - 12) / 2 + 1 = 5 positions a side
    big = rng.uniform(size=(1, 20, 20, 3)).astype(np.float32)
    grid = fcn(big).numpy()
    assert grid.shape == (1, 5, 5, 3)
    for i, j in [(0, 0), (2, 3), (4, 4)]:
        window = big[:, 2 * i:2 * i + 12, 2 * j:2 * j + 12]
        np.testing.assert_allclose(grid[0, i, j], model(window).numpy()[0], rtol=1e-5, atol=1e-6)


def test_dense_to_conv_rejects_a_model_without_a_dense_head():
    model = convlab.Sequential([layers.Conv2D(2, 3, input_shape=(8, 8, 1)), layers.GlobalAveragePooling2D()])
    with pytest.raises(ValueError, match=r"expected a model ending Flatten -> Dense layers, got the layers"):
        detection.dense_to_conv(model)


# ---------------------------------------------------------------------------- the job


def test_detection_job_quick_run_writes_its_outputs(tmp_path):
    from convlab.detection_job import train_detection

    summary = train_detection(out=str(tmp_path), quick=True, quiet=True, epochs=1)
    assert 0.0 <= summary["test_map50"] <= 1.0
    assert summary["history"]["loss"][0] > 0
    for name in ("predictions.png", "model.keras", "results.json", "history.png"):
        assert (tmp_path / name).exists(), name
