"""Hands-On Machine Learning (Géron), chapter 14, "Object Detection", "Fully Convolutional
Networks" and "You Only Look Once": the chapter's procedure, step by step, with convlab.detection
doing what the chapter describes in prose (it prints no code for these):

    intersection over union (IoU)          detection.box_iou
    non-max suppression                    detection.non_max_suppression
    a classifier's dense head as convs     detection.dense_to_conv (an FCN that slides over a larger image)
    anchor boxes by k-means (YOLOv2)       detection.kmeans_anchors
    a YOLO-style grid: targets, loss,      detection.encode_grid_targets, GridDetectionLoss, decode_grid
      decoding with non-max suppression
    mean Average Precision (mAP@0.5)       detection.mean_average_precision (11-point interpolated)

Stand-in data: the chapter's pictures are replaced by convlab.datasets.shapes: single shapes
(32x32) for the classifier that becomes an FCN, and scenes of one to three circles, squares and
triangles (64x64) with every box, for the detector. The full run trains the detector for 12
epochs on 1,500 scenes (the `python -m convlab` detection job's settings); --quick trains a
narrower one for one epoch on 64 scenes, and its mAP means nothing. The result is the mAP@0.5
on held-out scenes. (Localization, a class head and a box head on one base, is the chapter's
step before detection; it is not part of this example.)

    python examples/geron14_5_detection.py [--quick] [--out DIR]
"""

import os

import numpy as np

import convlab
from convlab import detection, layers

from _standin import parse_args, result


def main(argv=None):
    args = parse_args("geron14_5_detection", __doc__.splitlines()[0], argv)
    convlab.utils.set_seed(0)
    from convlab.datasets import shapes

    # ---- stand-in data: shapes and shapes scenes instead of photos
    if args.quick:
        num_single, num_scenes, num_test, epochs, widths = 96, 64, 16, 1, (8, 16, 16)
    else:
        num_single, num_scenes, num_test, epochs, widths = 1000, 1500, 200, 12, (16, 32, 64)
    single, _ = shapes.load_data(num_train=num_single, num_test=0, image_size=32, min_size=0.4, max_size=0.8)
    train, test = shapes.load_scenes(num_train=num_scenes, num_test=num_test, image_size=64)

    # ======================================================================= IoU and non-max suppression
    # Two 4x4 boxes that share half of their area: IoU = 8 / (16 + 16 - 8) = 1/3
    print("IoU:", detection.box_iou(np.array([[0, 0, 4, 4]]), np.array([[0, 2, 4, 6]]))[0, 0])
    # Three detections of one object and one of another: NMS keeps the best of the three and the other
    boxes = np.array([[10, 10, 30, 30], [11, 9, 31, 29], [12, 12, 32, 30], [40, 40, 60, 60]], dtype=float)
    scores = np.array([0.9, 0.75, 0.6, 0.8])
    print("non-max suppression keeps boxes", detection.non_max_suppression(boxes, scores, iou_threshold=0.5).tolist())

    # ======================================================================= a classifier, then its FCN twin
    classifier = convlab.Sequential([
        layers.Conv2D(16, 3, padding="same", activation="relu", input_shape=(32, 32, 3)),
        layers.MaxPooling2D(2),
        layers.Conv2D(32, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dense(3, activation="softmax"),
    ])
    classifier.compile(loss="sparse_categorical_crossentropy", optimizer="nadam", metrics=["accuracy"])
    classifier.fit(single.images.astype("float32") / 255, single.labels, epochs=1 if args.quick else 5)
    # The Dense layer over the 8x8x32 feature map becomes an 8x8 "valid" convolution with the same weights:
    fcn = detection.dense_to_conv(classifier, input_shape=(None, None, 3))
    fcn.summary()
    same_size = fcn.predict(single.images[:8].astype("float32") / 255)          # (8, 1, 1, 3)
    difference = np.abs(same_size[:, 0, 0] - classifier.predict(single.images[:8].astype("float32") / 255)).max()
    grid = fcn.predict(test.images[:1].astype("float32") / 255)                   # 64x64: a 9x9 grid of windows
    print(f"FCN on 32x32: the classifier's outputs (largest difference {difference:.2g}); on a 64x64 scene: a "
          f"{grid.shape[1]}x{grid.shape[2]} grid of class probabilities, one per 32x32 window, stride 4")

    # ======================================================================= a YOLO-style grid detector
    image_size, num_anchors, num_classes = 64, 3, 3
    normalized = [b / image_size for b in train.boxes]                 # fractions of the side
    sizes = np.concatenate([b[:, 2:] - b[:, :2] for b in normalized])  # (height, width) of every training box
    anchors = detection.kmeans_anchors(sizes, num_anchors, seed=0)
    grid_size = image_size // 2 ** len(widths)
    y_train = detection.encode_grid_targets(normalized, train.labels, grid_size, anchors, num_classes)
    print(f"anchors (height, width): {np.round(anchors, 3).tolist()}; grid {grid_size}x{grid_size}; "
          f"targets {y_train.shape}")

    inputs = layers.Input(shape=(image_size, image_size, 3))
    x = layers.Rescaling(1.0 / 255)(inputs)
    for width in widths:
        x = layers.Conv2D(width, 3, padding="same", activation="relu", use_bias=False)(x)
        x = layers.BatchNormalization(momentum=0.9)(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(2 * widths[-1], 3, padding="same", activation="relu")(x)
    outputs = layers.Conv2D(num_anchors * (5 + num_classes), 1)(x)  # per anchor: objectness, ty, tx, th, tw, classes
    detector = convlab.Model(inputs, outputs, name="grid_detector")
    detector.compile(optimizer=convlab.optimizers.Adam(1e-3),
                     loss=detection.GridDetectionLoss(num_anchors, num_classes))
    history = detector.fit(train.images, y_train, epochs=epochs, batch_size=32)

    predictions = detection.decode_grid(detector.predict(test.images), anchors, num_classes)  # with NMS
    truths = [(b / image_size, labels) for b, labels in zip(test.boxes, test.labels)]
    mean_ap, per_class = detection.mean_average_precision(predictions, truths, num_classes, iou_threshold=0.5)
    print("AP@0.5 per class:", {shapes.CLASS_NAMES[c]: round(ap, 3) for c, ap in per_class.items()})
    convlab.viz.plot_history(history, path=os.path.join(args.out, "history.png"))
    detector.save(os.path.join(args.out, "grid_detector.keras"))
    result("test_map50", mean_ap)


if __name__ == "__main__":
    main()
