"""Xception (Chollet, 2017) as keras.applications.Xception builds it, layer for layer and
name for name, so that Keras' weight files load into it by name.

    entry flow   Conv 32 3x3 s2 valid, BN, relu; Conv 64 3x3 valid, BN, relu; then for
                 128, 256, 728: [relu] SepConv, BN, relu, SepConv, BN, max pool 3x3 s2 same,
                 added to a Conv 1x1 s2 same + BN shortcut
    middle flow  8 x (relu, SepConv 728, BN) x 3 around an identity shortcut
    exit flow    relu SepConv 728 BN, relu SepConv 1024 BN, max pool, + Conv 1x1 s2 + BN
                 shortcut; SepConv 1536 BN relu, SepConv 2048 BN relu
    top          avg_pool, predictions

Convs and separable convs have no bias (a BN follows each); BatchNormalization keeps
Keras' default epsilon 1e-3. 22,910,480 parameters with the top (22,855,952 trainable),
20,861,480 without. The shortcut convs, their BNs and the adds are unnamed in Keras too
(conv2d, batch_normalization, add, ... as the session numbers them): weight loading pairs
such layers in the model's order, as Keras does.
"""

from .. import layers
from ..models import Model
from . import keras_conventions as conventions

__all__ = ["xception"]


def xception(include_top=True, weights=None, input_shape=None, pooling=None, classes=1000,
             classifier_activation="softmax", name="xception"):
    """keras.applications.Xception's arguments (without input_tensor), and no download:
    weights is None or the path of a weights file (Keras'
    xception_weights_tf_dim_ordering_tf_kernels[_notop].h5, a .weights.h5 or .keras file);
    input_shape defaults to (299, 299, 3) with the top and (None, None, 3) without; at
    least 71x71."""
    where = "xception"
    conventions.check_weights(where, weights, include_top, classifier_activation, (
        "xception", "xception_weights_tf_dim_ordering_tf_kernels.h5" if include_top
        else "xception_weights_tf_dim_ordering_tf_kernels_notop.h5"))
    input_shape = conventions.obtain_input_shape(where, input_shape, default_size=299, min_size=71,
                                                 require_flatten=include_top)
    conventions.check_pooling(where, pooling)
    inputs = layers.Input(shape=input_shape)

    x = layers.Conv2D(32, 3, strides=2, use_bias=False, name="block1_conv1")(inputs)
    x = layers.BatchNormalization(name="block1_conv1_bn")(x)
    x = layers.Activation("relu", name="block1_conv1_act")(x)
    x = layers.Conv2D(64, 3, use_bias=False, name="block1_conv2")(x)
    x = layers.BatchNormalization(name="block1_conv2_bn")(x)
    x = layers.Activation("relu", name="block1_conv2_act")(x)

    def separable(x, filters, block, conv):
        x = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False, name=f"block{block}_sepconv{conv}")(x)
        return layers.BatchNormalization(name=f"block{block}_sepconv{conv}_bn")(x)

    def downsampling_block(x, block, first, second):
        # Keras builds the shortcut first: its layers come first among the unnamed ones.
        residual = layers.Conv2D(second, 1, strides=2, padding="same", use_bias=False)(x)
        residual = layers.BatchNormalization()(residual)
        if block != 2:  # block 2 follows block1_conv2_act directly
            x = layers.Activation("relu", name=f"block{block}_sepconv1_act")(x)
        x = separable(x, first, block, 1)
        x = layers.Activation("relu", name=f"block{block}_sepconv2_act")(x)
        x = separable(x, second, block, 2)
        x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"block{block}_pool")(x)
        return layers.add([x, residual])

    for block, filters in ((2, 128), (3, 256), (4, 728)):
        x = downsampling_block(x, block, filters, filters)
    for block in range(5, 13):
        residual = x
        for conv in (1, 2, 3):
            x = layers.Activation("relu", name=f"block{block}_sepconv{conv}_act")(x)
            x = separable(x, 728, block, conv)
        x = layers.add([x, residual])
    x = downsampling_block(x, 13, 728, 1024)
    for conv, filters in ((1, 1536), (2, 2048)):
        x = separable(x, filters, 14, conv)
        x = layers.Activation("relu", name=f"block14_sepconv{conv}_act")(x)
    x = conventions.classifier_top(x, where, include_top, pooling, classes, classifier_activation,
                                   avg_pool_name="avg_pool" if include_top else None)
    return conventions.load_weights(Model(inputs, x, name=name), weights)
