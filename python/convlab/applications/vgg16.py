"""VGG16 (Simonyan & Zisserman, 2014) with Keras' layer names: blockN_convM, blockN_pool,
and on top flatten, fc1, fc2, predictions."""

from .. import layers
from ..models import Model

__all__ = ["vgg16"]

_BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))


def vgg16(include_top=False, input_shape=None, weights=None, pooling=None, classes=1000,
          classifier_activation="softmax"):
    """VGG16, as keras.applications.VGG16 builds it.

    include_top=False: the convolutional base (14,714,688 parameters; 5x5x512 output at
    180x180). input_shape defaults to (180, 180, 3) without the top (the book's size) and
    to (224, 224, 3) with it, the only size the fully connected top accepts.
    pooling ("avg" or None) applies to the base. weights: only None (random init) for now.
    """
    if weights is not None:
        raise NotImplementedError(
            f"vgg16: weights={weights!r} is not supported yet (importing pretrained weights comes "
            "later); pass weights=None for randomly initialized weights"
        )
    if input_shape is None:
        input_shape = (224, 224, 3) if include_top else (180, 180, 3)
    input_shape = tuple(input_shape)
    if include_top and input_shape != (224, 224, 3):
        raise ValueError(f"vgg16: with include_top=True the input shape must be (224, 224, 3), got {input_shape}")
    if pooling not in (None, "avg"):
        raise ValueError(f"vgg16: pooling must be None or 'avg', got {pooling!r}")
    inputs = layers.Input(shape=input_shape)
    x = inputs
    for block, (filters, convs) in enumerate(_BLOCKS, start=1):
        for conv in range(1, convs + 1):
            x = layers.Conv2D(filters, 3, activation="relu", padding="same", name=f"block{block}_conv{conv}")(x)
        x = layers.MaxPooling2D(2, strides=2, name=f"block{block}_pool")(x)
    if include_top:
        x = layers.Flatten(name="flatten")(x)
        x = layers.Dense(4096, activation="relu", name="fc1")(x)
        x = layers.Dense(4096, activation="relu", name="fc2")(x)
        x = layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    elif pooling == "avg":
        x = layers.GlobalAveragePooling2D()(x)
    return Model(inputs, x, name="vgg16")
