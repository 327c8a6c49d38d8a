"""VGG16 (Simonyan & Zisserman, 2014) with Keras' layer names: blockN_convM, blockN_pool,
and on top flatten, fc1, fc2, predictions. Keras' pretrained files (and torchvision's
state dicts, see weight_import.TORCHVISION_VGG16) load into it by these names."""

from .. import layers
from ..models import Model
from . import keras_conventions as conventions

__all__ = ["vgg16"]

_BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))


def vgg16(include_top=False, weights=None, input_shape=None, pooling=None, classes=1000,
          classifier_activation="softmax", name="vgg16"):
    """VGG16, as keras.applications.VGG16 builds it (its arguments, but no download).

    include_top=False: the convolutional base (14,714,688 parameters; 5x5x512 output at
    180x180); with the top at 224x224: 138,357,544. Unlike Keras, include_top defaults to
    False and input_shape then to (180, 180, 3) (the book's conv base); with the top it
    defaults to (224, 224, 3), the size of Keras' and torchvision's pretrained tops, and any
    size of at least 32x32 builds (fc1 then reads the size's flattened 512 maps).
    weights: None (random), or the path of a weights file: Keras'
    vgg16_weights_tf_dim_ordering_tf_kernels[_notop].h5, a .weights.h5 or .keras file, or
    convlab's own; weights="imagenet" raises (convlab does not download) and names the file.
    pooling ("avg", "max" or None) applies without the top.
    """
    where = "vgg16"
    conventions.check_weights(where, weights, include_top, classifier_activation, (
        "vgg16", "vgg16_weights_tf_dim_ordering_tf_kernels.h5" if include_top
        else "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"))
    if input_shape is None and not include_top:
        input_shape = (180, 180, 3)
    input_shape = conventions.obtain_input_shape(where, input_shape, default_size=224, min_size=32,
                                                 require_flatten=include_top)
    conventions.check_pooling(where, pooling)
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
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D()(x)
    return conventions.load_weights(Model(inputs, x, name=name), weights)
