"""The convnets of Chollet's Deep Learning with Python (2nd ed. ch. 8-9, 1st ed. ch. 5),
layer for layer as the listings build them (see shared/MODELS.md for the specs and the
parameter totals their summaries give).
"""

import numpy as np

from .. import layers
from ..models import Model, Sequential

__all__ = [
    "mnist_convnet", "mnist_convnet_first_edition_base", "cats_vs_dogs_convnet", "segmentation_net",
    "residual_block", "residual_convnet", "mini_xception",
]


def _front(inputs, augmentation):
    """The optional data-augmentation layer (or model) the book puts before Rescaling."""
    return inputs if augmentation is None else augmentation(inputs)


def mnist_convnet(pooling=True, num_classes=10):
    """Listing 8.1: Conv 32/64/128 (3x3, relu) with two max pools, Flatten, Dense softmax.

    104,202 parameters; pooling=False (listing 8.5's "no max pooling" model): 712,202.
    """
    inputs = layers.Input(shape=(28, 28, 1))
    x = layers.Conv2D(32, 3, activation="relu")(inputs)
    if pooling:
        x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(64, 3, activation="relu")(x)
    if pooling:
        x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(128, 3, activation="relu")(x)
    x = layers.Flatten()(x)
    outputs = layers.Dense(num_classes, activation="softmax")(x)
    return Model(inputs, outputs, name="mnist_convnet" if pooling else "mnist_convnet_no_pooling")


def mnist_convnet_first_edition_base():
    """First edition, listing 5.1: the Sequential conv base Conv 32, pool, Conv 64, pool, Conv 64
    (output 3x3x64, 55,744 parameters)."""
    return Sequential([
        layers.Conv2D(32, (3, 3), activation="relu", input_shape=(28, 28, 1)),
        layers.MaxPooling2D((2, 2)),
        layers.Conv2D(64, (3, 3), activation="relu"),
        layers.MaxPooling2D((2, 2)),
        layers.Conv2D(64, (3, 3), activation="relu"),
    ], name="mnist_convnet_first_edition_base")


def cats_vs_dogs_convnet(input_shape=(180, 180, 3), augmentation=None, dropout=None):
    """Listings 8.7 / 8.16: Rescaling, five Conv/Pool stages (32, 64, 128, 256, 256), Flatten,
    [Dropout], Dense(1, sigmoid). 991,041 parameters at 180x180.

    augmentation: a layer or model put in front (the book's RandomFlip/Rotation/Zoom stack);
    dropout: a rate (the book uses 0.5 with augmentation) or None for no Dropout layer.
    """
    inputs = layers.Input(shape=input_shape)
    x = _front(inputs, augmentation)
    x = layers.Rescaling(1.0 / 255)(x)
    x = layers.Conv2D(32, 3, activation="relu")(x)
    for filters in (64, 128, 256, 256):
        x = layers.MaxPooling2D(2)(x)
        x = layers.Conv2D(filters, 3, activation="relu")(x)
    x = layers.Flatten()(x)
    if dropout:
        x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(1, activation="sigmoid")(x)
    return Model(inputs, outputs, name="cats_vs_dogs_convnet")


def segmentation_net(img_size=(200, 200), num_classes=3, filters=(64, 128, 256)):
    """Listing 9.4: strided convs down to 1/8 size, Conv2DTranspose back up, a per-pixel
    softmax over num_classes. 2,880,643 parameters for 200x200 and 3 classes.

    filters: the widths of the three stages (the book's 64, 128, 256); a narrower net, e.g.
    (16, 32, 64), keeps the architecture and trains in minutes on a CPU.
    """
    if len(filters) != 3:
        raise ValueError(f"segmentation_net: filters must give three stage widths, got {filters!r}")
    inputs = layers.Input(shape=tuple(img_size) + (3,))
    x = layers.Rescaling(1.0 / 255)(inputs)
    for width in filters:
        x = layers.Conv2D(width, 3, strides=2, activation="relu", padding="same")(x)
        x = layers.Conv2D(width, 3, activation="relu", padding="same")(x)
    for width in reversed(filters):
        x = layers.Conv2DTranspose(width, 3, activation="relu", padding="same")(x)
        x = layers.Conv2DTranspose(width, 3, activation="relu", padding="same", strides=2)(x)
    outputs = layers.Conv2D(num_classes, 3, activation="softmax", padding="same")(x)
    return Model(inputs, outputs, name="segmentation_net")


def residual_block(x, filters, pooling=False):
    """Listing 9.x: two 3x3 same convs; the residual is projected by a 1x1 conv (strided if
    the block pools) when its shape would not match, then added."""
    residual = x
    x = layers.Conv2D(filters, 3, activation="relu", padding="same")(x)
    x = layers.Conv2D(filters, 3, activation="relu", padding="same")(x)
    if pooling:
        x = layers.MaxPooling2D(2, padding="same")(x)
        residual = layers.Conv2D(filters, 1, strides=2)(residual)
    elif filters != residual.shape[-1]:
        residual = layers.Conv2D(filters, 1)(residual)
    return layers.add([x, residual])


def residual_convnet(input_shape=(32, 32, 3)):
    """Rescaling, residual blocks of 32 (pool), 64 (pool) and 128 filters, GAP, Dense(1, sigmoid).
    297,697 parameters."""
    inputs = layers.Input(shape=input_shape)
    x = layers.Rescaling(1.0 / 255)(inputs)
    x = residual_block(x, filters=32, pooling=True)
    x = residual_block(x, filters=64, pooling=True)
    x = residual_block(x, filters=128, pooling=False)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(1, activation="sigmoid")(x)
    return Model(inputs, outputs, name="residual_convnet")


def mini_xception(input_shape=(180, 180, 3), augmentation=None, num_classes=1, batch_norm_momentum=0.99,
                  block_sizes=(32, 64, 128, 256, 512)):
    """Listing 9.x: the mini Xception-like cats-vs-dogs model. Per size in 32..512:
    BN, relu, SeparableConv; BN, relu, SeparableConv; 3x3/2 max pool; plus a strided 1x1 conv
    residual. 721,857 parameters, 718,849 trainable (the BN moving statistics are not).

    num_classes=1 is the book's Dense(1, sigmoid) head; more classes get Dense(n, softmax).
    batch_norm_momentum: Keras' default 0.99; a short training run (a few hundred steps) wants
    a smaller one, or the moving statistics used at inference trail the weights.
    block_sizes: the widths of the residual blocks, each of which halves the map. The book's
    five turn 180x180 into a 6x6 last map; a small image wants fewer (three take 48x48 to
    6x6), or the last maps shrink to a pixel or two and Grad-CAM has nothing to point with.
    """
    if (not isinstance(block_sizes, (tuple, list)) or not block_sizes
            or not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n > 0 for n in block_sizes)):
        raise ValueError(f"block_sizes must be a non-empty list of positive ints (filters per block), "
                         f"got {block_sizes!r}")
    block_sizes = [int(n) for n in block_sizes]  # the conv layers take Python ints only
    inputs = layers.Input(shape=input_shape)
    x = _front(inputs, augmentation)
    x = layers.Rescaling(1.0 / 255)(x)
    x = layers.Conv2D(filters=32, kernel_size=5, use_bias=False)(x)
    for size in block_sizes:
        residual = x
        x = layers.BatchNormalization(momentum=batch_norm_momentum)(x)
        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(size, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization(momentum=batch_norm_momentum)(x)
        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(size, 3, padding="same", use_bias=False)(x)
        x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
        residual = layers.Conv2D(size, 1, strides=2, padding="same", use_bias=False)(residual)
        x = layers.add([x, residual])
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.5)(x)
    if num_classes == 1:
        outputs = layers.Dense(1, activation="sigmoid")(x)
    else:
        outputs = layers.Dense(num_classes, activation="softmax")(x)
    return Model(inputs, outputs, name="mini_xception")
