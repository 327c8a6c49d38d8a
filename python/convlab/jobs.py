"""The training jobs behind `python -m convlab train ...`: the books' listings, end to end.

    train_mnist         listing 8.1-8.3: the small convnet on real MNIST digits (embedded),
                        rmsprop, sparse crossentropy, 5 epochs of batch 64
    train_segmentation  listing 9.4's Conv2DTranspose net on the synthetic shapes trimaps
    train_xception      the mini Xception on the synthetic shapes classification task

Each job seeds everything first (same seed, same run), prints progress, watches a validation
set during training (the val_ curves: MNIST holds out the last tenth of its training digits,
as Keras' validation_split does; the shapes jobs draw a validation part of their own),
evaluates once at the end on a test set that training never saw, saves the model
(model.keras), the loss/metric curves (history.png) and a small JSON summary (results.json)
in its output directory, and returns the summary as a dict.
"""

import json
import os
import time

import numpy as np

from . import applications, layers, optimizers, utils
from ._atomic import atomic_write
from .metrics import MeanIoU
from .models import Sequential

__all__ = ["train_mnist", "train_segmentation", "train_xception"]


def _prepare(out, seed, device):
    utils.set_seed(seed)
    utils.clear_session()
    os.makedirs(out, exist_ok=True)
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    if device == "cuda":
        from . import cuda_available

        status = cuda_available()
        if not status:
            raise RuntimeError(f"--device cuda: {status.reason}")


def _halving_rmsprop(num_train, batch_size, every_epochs):
    """The book's rmsprop (learning rate 1e-3), its rate halved every `every_epochs` epochs."""
    steps_per_epoch = -(-num_train // batch_size)
    return optimizers.RMSprop(optimizers.ExponentialDecay(1e-3, decay_steps=every_epochs * steps_per_epoch,
                                                          decay_rate=0.5))


def _train_and_test(model, train, validation, test, epochs, batch_size, verbose, metric, test_batch_size):
    """fit on train = (x, y), with validation = (x, y), held out from training, shown beside
    the training curve (it never steers training), then evaluate once on test = (x, y).
    Returns the history and the summary fields: test_loss, test_<metric>, train_seconds, history."""
    start = time.perf_counter()
    history = model.fit(*train, epochs=epochs, batch_size=batch_size, validation_data=validation, verbose=verbose)
    seconds = time.perf_counter() - start
    test_loss, test_value = model.evaluate(*test, batch_size=test_batch_size, verbose=0)
    if verbose:
        label = metric.replace("_", " ").replace("iou", "IoU")
        print(f"test {label}: {test_value:.4f} (test loss {test_loss:.4f}), trained in {seconds:.1f}s")
    return history, {"test_loss": test_loss, f"test_{metric}": test_value, "train_seconds": seconds,
                     "history": history.history}


def _finish(model, history, out, summary, verbose):
    from . import viz

    model_path = os.path.join(out, "model.keras")
    model.save(model_path)
    curve_path = os.path.join(out, "history.png")
    viz.plot_history(history, path=curve_path)
    summary = dict(summary, model=model_path, curves=curve_path)
    with atomic_write(os.path.join(out, "results.json"), "results") as file:
        file.write(json.dumps(summary, indent=2).encode("utf-8"))
    if verbose:
        print(f"saved the model to {model_path} and the curves to {curve_path}")
    return summary


def train_mnist(epochs=5, batch_size=64, device="cpu", out="convlab-runs/mnist", seed=0, verbose=1,
                visualize=True, data_path=None, validation_split=0.1):
    """The books' MNIST convnet (Conv 32/64/128, two max pools, Dense 10 softmax; 104,202
    parameters) trained with rmsprop on the embedded real MNIST digits: of the 4,000 training
    digits the last `validation_split` (400) are held out for validation and the rest (3,600)
    train the model; the 1,000 test digits are used once, at the end.

    data_path: a directory with the four standard MNIST IDX files, to use instead (the full
    60,000 / 10,000 split). Also writes digit.png, the first test digit (28x28 grayscale),
    which `python -m convlab visualize` can read; visualize: also write the interpretation
    images (activation grids, first-layer filters, filter patterns, Grad-CAM) of that digit.
    """
    from . import viz
    from .datasets import mnist

    _prepare(out, seed, device)
    if isinstance(validation_split, bool) or not isinstance(validation_split, (int, float)) \
            or not 0 < validation_split < 1:
        raise ValueError(f"train_mnist: validation_split must be a number in (0, 1), got {validation_split!r}")
    (x_train, y_train), (x_test, y_test) = mnist.load_data(data_path)
    digit_path = viz.write_png(x_test[0], os.path.join(out, "digit.png"))
    x_train = x_train.reshape(-1, 28, 28, 1).astype("float32") / 255
    x_test = x_test.reshape(-1, 28, 28, 1).astype("float32") / 255
    split_at = int(len(x_train) * (1 - validation_split))  # Keras' validation_split: the last fraction
    (x_train, x_validation), (y_train, y_validation) = np.split(x_train, [split_at]), np.split(y_train, [split_at])
    if verbose:
        print(f"MNIST: {len(x_train)} training, {len(x_validation)} validation and {len(x_test)} test digits")
    model = applications.mnist_convnet()
    model.to(device)
    model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history, results = _train_and_test(model, (x_train, y_train), (x_validation, y_validation), (x_test, y_test),
                                       epochs, batch_size, verbose, "accuracy", test_batch_size=256)
    summary = {"job": "mnist", "epochs": epochs, "batch_size": batch_size, "device": device, "seed": seed,
               "train_samples": len(x_train), "validation_samples": len(x_validation),
               "test_samples": len(x_test), "digit": digit_path, **results}
    summary = _finish(model, history, out, summary, verbose)
    if visualize:
        written = viz.visualize(model, x_test[0], os.path.join(out, "visualize"))
        summary["visualize"] = written
        if verbose:
            print(f"wrote {len(written)} interpretation images of {digit_path} to {os.path.join(out, 'visualize')}")
    return summary


def _shapes(num_train, num_validation, num_test, image_size, seed, verbose, min_size=0.2, max_size=0.6):
    """(train, validation, test): three parts of the shapes dataset, each from its own seed stream."""
    from .datasets import shapes

    options = dict(image_size=image_size, seed=seed, min_size=min_size, max_size=max_size)
    train, test = shapes.load_data(num_train=num_train, num_test=num_test, **options)
    validation = shapes.generate(num_validation, part="validation", **options)
    if verbose:
        print(f"shapes: {len(train)} training, {len(validation)} validation and {len(test)} test images of "
              f"{image_size}x{image_size} ({', '.join(train.class_names)})")
    return train, validation, test


def _mask_montage(images, masks, predicted, path):
    """Rows of image | true trimap | predicted trimap (0 black foreground, 1 grey, 2 white)."""
    from .viz import write_png

    shades = np.array([0, 128, 255], dtype=np.uint8)
    rows = []
    for image, mask, guess in zip(images, masks, predicted):
        rows.append(np.concatenate([image, np.repeat(shades[mask][..., None], 3, -1),
                                    np.repeat(shades[guess][..., None], 3, -1)], axis=1))
    write_png(np.concatenate(rows, axis=0), path)


def _grad_cam_montage(model, images, boxes, path, zoom=4):
    """Three rows, zoomed `zoom` times: the images; their Grad-CAM heatmaps (the last conv
    layer, the predicted class) enlarged to the image and coloured, each shape's box outlined
    in white; and the book's overlay of the heatmap on the image."""
    from . import viz

    layer = viz.find_last_conv_layer(model)
    rows = [[], [], []]
    for image, (top, left, bottom, right) in zip(images, boxes):
        heatmap = viz.grad_cam(model, image.astype(np.float32), layer)
        enlarged = viz.resize_heatmap(heatmap, image.shape[:2])
        coloured = np.round(viz.jet(np.uint8(255 * enlarged)) * 255).astype(np.uint8)
        coloured[top:bottom, [left, right - 1]] = 255
        coloured[[top, bottom - 1], left:right] = 255
        for row, picture in zip(rows, (image, coloured, viz.overlay_heatmap(image, heatmap))):
            row.append(picture)
    montage = np.concatenate([np.concatenate(row, axis=1) for row in rows], axis=0)
    viz.write_png(np.kron(montage, np.ones((zoom, zoom, 1), dtype=np.uint8)), path)
    return path


def train_segmentation(epochs=30, batch_size=32, device="cpu", out="convlab-runs/segmentation", seed=0, verbose=1,
                       image_size=32, filters=(16, 32, 64), num_train=2000, num_validation=200, num_test=200):
    """Listing 9.4's Conv2DTranspose segmentation net (three strided convs down, three
    transposed convs up, per-pixel softmax over foreground/background/contour) on the shapes
    trimaps, at image_size and stage widths `filters` (the book's are 200 and (64, 128, 256)).
    Reports the mean IoU over the three classes on held-out images.

    The net first learns to call every pixel background (89% of them are): the loss sits
    near the entropy of the class frequencies for a few epochs before the shapes come out
    (PyTorch shows the same plateau with this architecture), hence the 30 epochs.
    """
    model, history, summary, _ = _segment_shapes(
        "segmentation", lambda: applications.segmentation_net(img_size=(image_size, image_size), num_classes=3,
                                                              filters=filters),
        out, seed, device, epochs, batch_size, verbose, image_size, filters, num_train, num_validation, num_test)
    return _finish(model, history, out, summary, verbose)


def _segment_shapes(job, build, out, seed, device, epochs, batch_size, verbose, image_size, filters, num_train,
                   num_validation, num_test):
    """The segmentation jobs' common run, so that every net trained by one meets the same
    data, split, optimizer, loss and epochs: the shapes trimaps (shapes of 0.3-0.6 of the
    side), rmsprop with its rate halved every 8 epochs (as in the book; the halving lets the
    last epochs settle instead of swinging by a few points of IoU from one epoch to the next),
    sparse categorical crossentropy, the test mean IoU over the three classes, and
    predictions.png. `build()` makes the model once the seed is set and the data drawn.
    Returns (model, history, summary, the picture's path); the caller finishes the run."""
    _prepare(out, seed, device)
    train, validation, test = _shapes(num_train, num_validation, num_test, image_size, seed, verbose, min_size=0.3)
    model = build()
    model.to(device)
    model.compile(optimizer=_halving_rmsprop(len(train), batch_size, 8), loss="sparse_categorical_crossentropy",
                  metrics=[MeanIoU(num_classes=3, sparse_y_pred=False)])
    history, results = _train_and_test(model, (train.images, train.masks), (validation.images, validation.masks),
                                       (test.images, test.masks), epochs, batch_size, verbose, "mean_iou",
                                       test_batch_size=64)
    predicted = model.predict(test.images[:6], batch_size=6).argmax(-1)
    picture = os.path.join(out, "predictions.png")
    _mask_montage(test.images[:6], test.masks[:6], predicted, picture)
    summary = {"job": job, "epochs": epochs, "batch_size": batch_size, "device": device, "seed": seed,
               "image_size": image_size, "filters": list(filters), "train_samples": len(train),
               "validation_samples": len(validation), "test_samples": len(test), **results}
    return model, history, summary, picture


def book_augmentation(seed=None):
    """The books' augmentation stack: horizontal flips, rotations up to 10% of a turn, zooms up to 20%."""
    return Sequential([
        layers.RandomFlip("horizontal", seed=seed),
        layers.RandomRotation(0.1, seed=None if seed is None else seed + 1),
        layers.RandomZoom(0.2, seed=None if seed is None else seed + 2),
    ], name="data_augmentation")


def train_xception(epochs=15, batch_size=32, device="cpu", out="convlab-runs/xception", seed=0, verbose=1,
                   image_size=48, num_train=4000, num_validation=300, num_test=300, augmentation=False,
                   block_sizes=(32, 64, 128),
                   min_size=0.3, max_size=0.7, visualize=True):
    """The mini Xception (separable convs, batch norm, residual connections; the book's
    cats-vs-dogs model with a 3-class softmax head) on the shapes classification task.
    Reports test accuracy, and with visualize=True writes grad_cam.png: the first eight test
    images, their Grad-CAM heatmaps with each shape's box drawn in white, and the overlays.

    Scaled to 48x48 images as the segmentation job is scaled: three residual blocks instead of
    the book's five, so the last map is 6x6 as the book's is at 180x180 (five blocks would
    leave 2x2, too coarse for Grad-CAM to say where a shape is), and shapes spanning 0.3-0.7
    of the side (so the smallest still covers a few cells of the last conv layer's 11x11 map).

    augmentation=True puts the books' RandomFlip/RandomRotation/RandomZoom stack in front. It
    is off by default: the generator already varies position, size and rotation, and more
    generated images (num_train) regularize without slowing learning. (With augmentation on,
    1,500 images of 64x64 and 12 epochs reached 0.77 test accuracy.)
    """
    _prepare(out, seed, device)
    train, validation, test = _shapes(num_train, num_validation, num_test, image_size, seed, verbose,
                                      min_size=min_size, max_size=max_size)
    model = applications.mini_xception(input_shape=(image_size, image_size, 3), num_classes=len(train.class_names),
                                       augmentation=book_augmentation() if augmentation else None,
                                       batch_norm_momentum=0.9, block_sizes=block_sizes)
    model.to(device)
    # rmsprop as in the book, its rate halved every 4 epochs, and batch-norm momentum 0.9
    # instead of 0.99: in a run this short, moving statistics averaged over ~100 steps trail
    # the fast-changing weights so far that inference (which uses them) lags training by
    # several epochs.
    model.compile(optimizer=_halving_rmsprop(len(train), batch_size, 4), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history, results = _train_and_test(model, (train.images, train.labels), (validation.images, validation.labels),
                                       (test.images, test.labels), epochs, batch_size, verbose, "accuracy",
                                       test_batch_size=64)
    summary = {"job": "xception", "epochs": epochs, "batch_size": batch_size, "device": device, "seed": seed,
               "image_size": image_size, "block_sizes": list(block_sizes), "min_size": min_size,
               "max_size": max_size, "train_samples": len(train), "validation_samples": len(validation),
               "test_samples": len(test), **results}
    if visualize:
        summary["grad_cam"] = _grad_cam_montage(model, test.images[:8], test.boxes[:8],
                                                os.path.join(out, "grad_cam.png"))
        if verbose:
            print(f"wrote the Grad-CAM heatmaps of 8 test images to {summary['grad_cam']}")
    return _finish(model, history, out, summary, verbose)
