"""The CNN architectures of Géron's Hands-On Machine Learning, chapter 14, as functions with
Keras' application signature (input_shape, classes, include_top).

    fashion_mnist_convnet   the chapter's first CNN (Conv 64 7x7, two pairs of Conv 128/256, Dense 128/64/10)
    lenet5                  table 14-1 (tanh, average pooling with a coefficient and bias per map)
    alexnet                 table 14-2, with LocalResponseNormalization after C1 and C3
    inception_module        GoogLeNet's building block; googlenet, figure 14-14
    resnet34                Géron's Sequential of ResidualUnit layers; resnet50 the bottleneck variant
    xception                entry flow, middle flow (8 blocks), exit flow, as keras.applications builds it
    squeeze_excite          the SE block (GAP -> dense C/16 relu -> dense C sigmoid -> scale), and
                            SE-ResNet through resnet34/resnet50(squeeze_excite=True)
    localization_model      classification and localization: a convnet base, a softmax class head
                            and a 4-unit box head, compiled with Géron's two losses and weights
    fcn_segmentation        an FCN-8s-style segmentation net: class scores upsampled by transposed
                            convs and fused with the scores of two lower layers (skip connections)

Every function builds the full-size net by default (its parameter count is checked in
tests/test_geron_architectures.py against PyTorch modules built there and published
totals); `width` (a multiplier of every layer's filters and units) and the block counts
scale a net down to something a CPU trains in seconds.
"""

import numpy as np

from .. import layers
from ..models import Model

__all__ = ["fashion_mnist_convnet", "lenet5", "alexnet", "inception_module", "googlenet", "resnet34", "resnet50",
           "xception", "squeeze_excite", "localization_model", "fcn_segmentation", "bilinear_upsampling_kernel"]


def _scaled(filters, width):
    return max(1, int(round(filters * width)))


def _check_width(width, where):
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not width > 0:
        raise ValueError(f"{where}: width must be a positive number (a multiplier of every layer's filters), "
                         f"got {width!r}")


def _classifier(x, classes, name="predictions"):
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1:
        raise ValueError(f"classes must be a positive int, got {classes!r}")
    return layers.Dense(classes, activation="softmax", name=name)(x)


def fashion_mnist_convnet(input_shape=(28, 28, 1), classes=10, include_top=True):
    """The chapter's first CNN (Fashion MNIST, "over 92% accuracy on the test set"):
    Conv(64, 7) -> pool -> Conv(128, 3) x2 -> pool -> Conv(256, 3) x2 -> pool -> Flatten ->
    Dense(128) -> Dropout(0.5) -> Dense(64) -> Dropout(0.5) -> Dense(10, softmax); every conv
    "same" and relu. 1,413,834 parameters."""
    inputs = layers.Input(shape=input_shape)
    x = layers.Conv2D(64, 7, activation="relu", padding="same")(inputs)
    x = layers.MaxPooling2D(2)(x)
    for filters in (128, 256):
        x = layers.Conv2D(filters, 3, activation="relu", padding="same")(x)
        x = layers.Conv2D(filters, 3, activation="relu", padding="same")(x)
        x = layers.MaxPooling2D(2)(x)
    if include_top:
        x = layers.Flatten()(x)
        x = layers.Dense(128, activation="relu")(x)
        x = layers.Dropout(0.5)(x)
        x = layers.Dense(64, activation="relu")(x)
        x = layers.Dropout(0.5)(x)
        x = _classifier(x, classes)
    return Model(inputs, x, name="fashion_mnist_convnet")


def lenet5(input_shape=(32, 32, 1), classes=10, include_top=True, trainable_subsampling=True):
    """LeNet-5 as table 14-1 lists it: In 32x32 -> C1 6@5x5 tanh (28x28) -> S2 2x2 average
    pooling (14x14) -> C3 16@5x5 tanh (10x10) -> S4 (5x5) -> C5 120@5x5 tanh (1x1) ->
    F6 Dense 84 tanh -> Out 10.

    Two departures, both said in the chapter's text: the output is Dense(classes, softmax)
    instead of LeCun's RBF units (squared distance to fixed bitmaps); and C3 is connected to
    all six S2 maps, where LeCun connected each C3 map to only three or four of them (2,416
    weights in C3 instead of 1,516).

    trainable_subsampling=True (LeCun's): each S map multiplies its average by a learnable
    coefficient, adds a learnable bias and applies tanh (a 1x1 DepthwiseConv2D with bias is
    exactly that: one coefficient and one bias per map), 12 parameters in S2 and 32 in S4;
    61,750 parameters in all. False: plain average pooling, 61,706 (the usual Keras port).
    include_top=False stops after C5 (1x1x120).
    """
    inputs = layers.Input(shape=input_shape)
    x = inputs
    for name, filters in (("c1", 6), ("c3", 16)):
        x = layers.Conv2D(filters, 5, activation="tanh", name=name)(x)
        pool_name = "s2" if name == "c1" else "s4"
        x = layers.AveragePooling2D(2, name=pool_name)(x)
        if trainable_subsampling:
            x = layers.DepthwiseConv2D(1, use_bias=True, activation="tanh", name=f"{pool_name}_coefficients")(x)
    x = layers.Conv2D(120, 5, activation="tanh", name="c5")(x)
    if include_top:
        x = layers.Flatten()(x)
        x = layers.Dense(84, activation="tanh", name="f6")(x)
        x = _classifier(x, classes, name="output")
    return Model(inputs, x, name="lenet5")


def _lrn(name):
    # Géron's values (tf.nn.local_response_normalization(..., depth_radius=2, bias=1,
    # alpha=0.00002, beta=0.75)); the same as Caffe's AlexNet/GoogLeNet LRN (local_size 5,
    # alpha 1e-4, which Caffe divides by the size).
    return layers.LocalResponseNormalization(depth_radius=2, bias=1.0, alpha=0.00002, beta=0.75, name=name)


def alexnet(input_shape=(227, 227, 3), classes=1000, include_top=True, final_pooling=False, dropout=0.5, width=1.0):
    """AlexNet as table 14-2 lists it: In 227x227x3 -> C1 96@11x11 s4 valid relu (55x55) ->
    LRN -> S2 max 3x3 s2 valid (27x27) -> C3 256@5x5 same relu -> LRN -> S4 max 3x3 s2 valid
    (13x13) -> C5 384@3x3 -> C6 384@3x3 -> C7 256@3x3 (same, relu) -> F8 4096 relu -> F9 4096
    relu -> Out 1000 softmax, with dropout 50% before F8 and F9 (the chapter's regularization).

    The table goes from C7 (13x13x256) straight to F8, which gives F8 43,264 inputs and the
    net 194,093,000 parameters (hand count: the conv layers hold 3,747,200, F8
    177,213,440, F9 16,781,312, Out 4,097,000). Krizhevsky's network pools C7 once more
    (3x3 s2, to 6x6): final_pooling=True, 62,378,344 parameters, the paper's usual count.
    width scales every layer's filters and units (for small test nets).
    """
    _check_width(width, "alexnet")
    inputs = layers.Input(shape=input_shape)
    x = layers.Conv2D(_scaled(96, width), 11, strides=4, activation="relu", name="c1")(inputs)
    x = _lrn("c1_lrn")(x)
    x = layers.MaxPooling2D(3, strides=2, name="s2")(x)
    x = layers.Conv2D(_scaled(256, width), 5, padding="same", activation="relu", name="c3")(x)
    x = _lrn("c3_lrn")(x)
    x = layers.MaxPooling2D(3, strides=2, name="s4")(x)
    for name, filters in (("c5", 384), ("c6", 384), ("c7", 256)):
        x = layers.Conv2D(_scaled(filters, width), 3, padding="same", activation="relu", name=name)(x)
    if final_pooling:
        x = layers.MaxPooling2D(3, strides=2, name="s8")(x)
    if include_top:
        x = layers.Flatten()(x)
        for name in ("f8", "f9"):
            if dropout:
                x = layers.Dropout(dropout)(x)
            x = layers.Dense(_scaled(4096, width), activation="relu", name=name)(x)
        x = _classifier(x, classes, name="output")
    return Model(inputs, x, name="alexnet")


def inception_module(x, filters_1x1, filters_3x3_reduce, filters_3x3, filters_5x5_reduce, filters_5x5,
                     filters_pool_projection, name=None):
    """GoogLeNet's inception module (figure 14-13): four branches on the same input, each
    "same" padded with stride 1 and relu, concatenated along the channels (depth concat):

        1x1 conv (filters_1x1)
        1x1 conv (filters_3x3_reduce) -> 3x3 conv (filters_3x3)
        1x1 conv (filters_5x5_reduce) -> 5x5 conv (filters_5x5)
        3x3 max pool (stride 1, same) -> 1x1 conv (filters_pool_projection)

    Output channels: filters_1x1 + filters_3x3 + filters_5x5 + filters_pool_projection.
    """
    def conv(filters, size, suffix, inputs):
        return layers.Conv2D(filters, size, padding="same", activation="relu",
                             name=None if name is None else f"{name}_{suffix}")(inputs)

    branch_1 = conv(filters_1x1, 1, "1x1", x)
    branch_3 = conv(filters_3x3, 3, "3x3", conv(filters_3x3_reduce, 1, "3x3_reduce", x))
    branch_5 = conv(filters_5x5, 5, "5x5", conv(filters_5x5_reduce, 1, "5x5_reduce", x))
    pooled = layers.MaxPooling2D(3, strides=1, padding="same", name=None if name is None else f"{name}_pool")(x)
    branch_pool = conv(filters_pool_projection, 1, "pool_projection", pooled)
    return layers.concatenate([branch_1, branch_3, branch_5, branch_pool],
                              name=None if name is None else f"{name}_concat")


# Szegedy et al. 2014, table 1: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj.
GOOGLENET_INCEPTION_FILTERS = {
    "3a": (64, 96, 128, 16, 32, 32), "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64), "4b": (160, 112, 224, 24, 64, 64), "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64), "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128), "5b": (384, 192, 384, 48, 128, 128),
}


def _auxiliary_classifier(x, classes, width, name):
    """The paper's side head: 5x5 average pool s3 (valid), 1x1 conv 128 relu, Dense 1024 relu,
    dropout 70%, Dense softmax."""
    x = layers.AveragePooling2D(5, strides=3, name=f"{name}_pool")(x)
    x = layers.Conv2D(_scaled(128, width), 1, activation="relu", name=f"{name}_conv")(x)
    x = layers.Flatten(name=f"{name}_flatten")(x)
    x = layers.Dense(_scaled(1024, width), activation="relu", name=f"{name}_dense")(x)
    x = layers.Dropout(0.7, name=f"{name}_dropout")(x)
    return layers.Dense(classes, activation="softmax", name=f"{name}_predictions")(x)


def googlenet(input_shape=(224, 224, 3), classes=1000, include_top=True, auxiliary_classifiers=False, width=1.0):
    """GoogLeNet (Inception v1) as figure 14-14 draws it, every conv relu and every layer
    "same" padded: Conv 64 7x7 s2 -> max pool 3x3 s2 -> LRN -> Conv 64 1x1 -> Conv 192 3x3 ->
    LRN -> max pool 3x3 s2 -> inception 3a, 3b -> max pool -> 4a..4e -> max pool -> 5a, 5b ->
    global average pooling -> dropout 40% -> Dense(classes, softmax).

    auxiliary_classifiers=True adds the paper's two side heads on 4a and 4d (the model then
    has three outputs: main, aux1, aux2; the paper weighs the side losses by 0.3 in training
    and drops them at inference). width scales every layer's filters.
    """
    _check_width(width, "googlenet")
    inputs = layers.Input(shape=input_shape)
    x = layers.Conv2D(_scaled(64, width), 7, strides=2, padding="same", activation="relu", name="conv1")(inputs)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool1")(x)
    x = _lrn("lrn1")(x)
    x = layers.Conv2D(_scaled(64, width), 1, activation="relu", name="conv2_reduce")(x)
    x = layers.Conv2D(_scaled(192, width), 3, padding="same", activation="relu", name="conv2")(x)
    x = _lrn("lrn2")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool2")(x)
    side_outputs = []
    for stage in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b"):
        if stage in ("4a", "5a"):
            x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"pool{stage[0]}")(x)
        filters = [_scaled(f, width) for f in GOOGLENET_INCEPTION_FILTERS[stage]]
        x = inception_module(x, *filters, name=f"inception_{stage}")
        if include_top and auxiliary_classifiers and stage in ("4a", "4d"):
            side_outputs.append(_auxiliary_classifier(x, classes, width, f"aux{len(side_outputs) + 1}"))
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dropout(0.4)(x)
        x = _classifier(x, classes)
    return Model(inputs, [x] + side_outputs if side_outputs else x, name="googlenet")


def _resnet(input_shape, classes, include_top, filters, units, bottleneck, squeeze_excite, name):
    if len(filters) != len(units) or not units:
        raise ValueError(f"{name}: filters and units must give one entry per stage, got filters={filters!r} "
                         f"and units={units!r}")
    inputs = layers.Input(shape=input_shape)
    x = layers.Conv2D(filters[0], 7, strides=2, padding="same", kernel_initializer="he_normal", use_bias=False,
                      name="conv1")(inputs)
    x = layers.BatchNormalization(name="conv1_bn")(x)
    x = layers.Activation("relu", name="conv1_relu")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool1")(x)
    for stage, (stage_filters, count) in enumerate(zip(filters, units)):
        for unit in range(count):
            # Géron: strides = 1 if filters == prev_filters else 2 (the first unit of every stage but the first)
            strides = 2 if stage > 0 and unit == 0 else 1
            x = layers.ResidualUnit(stage_filters, strides=strides, bottleneck=bottleneck,
                                    squeeze_excite=squeeze_excite, name=f"stage{stage + 1}_unit{unit + 1}")(x)
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = _classifier(x, classes)
    return Model(inputs, x, name=name)


def resnet34(input_shape=(224, 224, 3), classes=1000, include_top=True, filters=(64, 128, 256, 512),
             units=(3, 4, 6, 3), squeeze_excite=False):
    """ResNet-34 as Géron builds it: Conv 64 7x7 s2 (no bias) -> BN -> relu -> max pool 3x3 s2
    -> ResidualUnit 64 x3, 128 x4, 256 x6, 512 x3 (the first unit of each later stage has
    strides 2 and a 1x1 s2 conv + BN shortcut) -> global average pooling -> Dense softmax.
    21,814,696 parameters with 1,000 classes, of which 21,797,672 trainable (torchvision's
    resnet34 count: the rest are the BN moving means and variances).

    squeeze_excite=True makes it an SE-ResNet-34 (an SE block on every unit's main path).
    filters and units scale it down."""
    return _resnet(input_shape, classes, include_top, tuple(filters), tuple(units), False, squeeze_excite,
                   "se_resnet34" if squeeze_excite else "resnet34")


def resnet50(input_shape=(224, 224, 3), classes=1000, include_top=True, filters=(64, 128, 256, 512),
             units=(3, 4, 6, 3), squeeze_excite=False):
    """ResNet-50: resnet34's layout with bottleneck units (1x1 filters, 3x3 filters, 1x1
    4*filters), so the stages output 256, 512, 1024 and 2048 channels. 25,557,032 trainable
    parameters with 1,000 classes (torchvision's resnet50). squeeze_excite=True gives
    SE-ResNet-50 (Hu et al.; ratio 16)."""
    return _resnet(input_shape, classes, include_top, tuple(filters), tuple(units), True, squeeze_excite,
                   "se_resnet50" if squeeze_excite else "resnet50")


def squeeze_excite(x, ratio=16, name=None):
    """The SE block (figure 14-20): squeeze each map to its mean (global average pooling),
    excite through a dense layer of C/ratio relu units and one of C sigmoid units, and
    multiply every feature map by its weight in [0, 1].

    The two dense layers are written as 1x1 convs on the 1x1xC pooled map (as keras'
    EfficientNet writes them): a 1x1 conv on one pixel is a dense layer, kernel (1, 1, C, C/r)
    for (C, C/r), with the same weights and bias; and the (1, 1, C) result broadcasts over
    the feature maps in Multiply.
    """
    channels = x.shape[-1]
    squeezed = max(1, channels // ratio)

    def named(suffix):
        return None if name is None else f"{name}_{suffix}"

    scale = layers.GlobalAveragePooling2D(keepdims=True, name=named("squeeze"))(x)
    scale = layers.Conv2D(squeezed, 1, activation="relu", name=named("reduce"))(scale)
    scale = layers.Conv2D(channels, 1, activation="sigmoid", name=named("expand"))(scale)
    # [scale, x], not [x, scale]: convlab.autograd's graph walk (as of this writing) gets the
    # gradient of a tensor used on two paths right only when the shorter path is listed last
    return layers.Multiply(name=named("scale"))([scale, x])


def _separable(filters, name):
    return layers.SeparableConv2D(filters, 3, padding="same", use_bias=False, name=name)


def xception(input_shape=(299, 299, 3), classes=1000, include_top=True, width=1.0, middle_blocks=8):
    """Xception (figure 14-22) layer for layer as keras.applications.Xception builds it:

    entry flow   Conv 32 3x3 s2 -> BN relu -> Conv 64 3x3 -> BN relu; then three blocks of
                 [relu] SepConv f -> BN -> relu -> SepConv f -> BN -> max pool 3x3 s2 same,
                 added to a Conv 1x1 s2 + BN shortcut, for f = 128, 256, 728
    middle flow  middle_blocks x (relu SepConv 728 BN) x 3 with an identity shortcut
    exit flow    relu SepConv 728 BN relu SepConv 1024 BN max pool, + Conv 1x1 s2 BN shortcut;
                 SepConv 1536 BN relu, SepConv 2048 BN relu; global average pooling; Dense softmax

    22,910,480 parameters (22,855,952 trainable), as Keras' summary gives them. Convs and
    separable convs have no bias (a BN follows each). width scales the filters.
    """
    _check_width(width, "xception")
    if isinstance(middle_blocks, bool) or not isinstance(middle_blocks, int) or middle_blocks < 0:
        raise ValueError(f"xception: middle_blocks must be an int >= 0, got {middle_blocks!r}")

    def f(filters):
        return _scaled(filters, width)

    inputs = layers.Input(shape=input_shape)
    x = layers.Conv2D(f(32), 3, strides=2, use_bias=False, name="block1_conv1")(inputs)
    x = layers.BatchNormalization(name="block1_conv1_bn")(x)
    x = layers.Activation("relu", name="block1_conv1_act")(x)
    x = layers.Conv2D(f(64), 3, use_bias=False, name="block1_conv2")(x)
    x = layers.BatchNormalization(name="block1_conv2_bn")(x)
    x = layers.Activation("relu", name="block1_conv2_act")(x)

    def downsampling_block(x, first, second, block, relu_first):
        residual = layers.Conv2D(second, 1, strides=2, padding="same", use_bias=False)(x)
        residual = layers.BatchNormalization()(residual)
        if relu_first:
            x = layers.Activation("relu", name=f"block{block}_sepconv1_act")(x)
        x = _separable(first, f"block{block}_sepconv1")(x)
        x = layers.BatchNormalization(name=f"block{block}_sepconv1_bn")(x)
        x = layers.Activation("relu", name=f"block{block}_sepconv2_act")(x)
        x = _separable(second, f"block{block}_sepconv2")(x)
        x = layers.BatchNormalization(name=f"block{block}_sepconv2_bn")(x)
        x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"block{block}_pool")(x)
        return layers.add([x, residual])

    x = downsampling_block(x, f(128), f(128), 2, relu_first=False)
    x = downsampling_block(x, f(256), f(256), 3, relu_first=True)
    x = downsampling_block(x, f(728), f(728), 4, relu_first=True)
    for index in range(middle_blocks):
        residual = x
        block = index + 5
        for conv in (1, 2, 3):
            x = layers.Activation("relu", name=f"block{block}_sepconv{conv}_act")(x)
            x = _separable(f(728), f"block{block}_sepconv{conv}")(x)
            x = layers.BatchNormalization(name=f"block{block}_sepconv{conv}_bn")(x)
        x = layers.add([x, residual])
    exit_block = middle_blocks + 5
    x = downsampling_block(x, f(728), f(1024), exit_block, relu_first=True)
    for conv, filters in ((1, 1536), (2, 2048)):
        x = _separable(f(filters), f"block{exit_block + 1}_sepconv{conv}")(x)
        x = layers.BatchNormalization(name=f"block{exit_block + 1}_sepconv{conv}_bn")(x)
        x = layers.Activation("relu", name=f"block{exit_block + 1}_sepconv{conv}_act")(x)
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = _classifier(x, classes)
    return Model(inputs, x, name="xception")


# ---------------------------------------------------------------------------- classification and localization

BOX_FORMAT = "center"  # the box head's (center_y, center_x, height, width), fractions of the image side


def _check_filters(filters, where, minimum=1):
    filters = tuple(filters) if isinstance(filters, (list, tuple)) else filters
    if not isinstance(filters, tuple) or len(filters) < minimum or any(
            isinstance(f, bool) or not isinstance(f, (int, np.integer)) or f < 1 for f in filters):
        raise ValueError(f"{where}: filters must be a list of at least {minimum} positive ints (one width per "
                         f"stage), got {filters!r}")
    return tuple(int(f) for f in filters)


def _localization_base(input_shape, filters):
    """Per stage: Conv 3x3 same (no bias) -> BN -> relu -> 2x2 max pool, so the last map is
    input / 2**len(filters) a side."""
    inputs = layers.Input(shape=input_shape)
    x = layers.Rescaling(1.0 / 255, name="rescaling")(inputs)
    for stage, width in enumerate(filters, start=1):
        x = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"block{stage}_conv")(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"block{stage}_bn")(x)
        x = layers.Activation("relu", name=f"block{stage}_relu")(x)
        x = layers.MaxPooling2D(2, name=f"block{stage}_pool")(x)
    return inputs, x


def localization_model(input_shape=None, classes=3, base=None, filters=(16, 32, 64, 128), pooling="flatten",
                       dense_units=None, box_activation="sigmoid", optimizer="adam", loss_weights=(0.8, 0.2)):
    """Classification and localization (Géron, ch. 14): one convnet base, two heads.

        class  Dense(classes, softmax)  sparse categorical crossentropy, weight 0.8
        box    Dense(4, box_activation)  mean squared error, weight 0.2

    compiled as the chapter does: loss=["sparse_categorical_crossentropy", "mse"],
    loss_weights=[0.8, 0.2], metrics accuracy on the class output. fit takes
    y=[labels, boxes].

    Boxes are (center_y, center_x, height, width) as fractions of the image side, so every
    number lies in [0, 1] (the chapter's advice: normalized coordinates); the sigmoid keeps
    the predictions there too (box_activation=None gives the chapter's linear head). This is
    convlab.detection's "center" format, so paired_iou(true, predicted, box_format="center")
    scores the predictions. (Géron also suggests predicting the square roots of height and
    width, which weighs an error on a small box more; the plain values are kept here.)

    base: None builds a small convnet from scratch on input_shape (default 64x64x3): per
        width in `filters`, Conv 3x3 (no bias) -> BN -> relu -> 2x2 max pool, after a
        Rescaling(1/255). Or a Model without its top (one input, a 4-D feature map out), such
        as Géron's applications.geron_xception(include_top=False); input_shape then defaults
        to its input.
    pooling: "avg" (global average pooling, as Géron heads a pretrained Xception) or
        "flatten" (the default: keeps where in the map a feature fired, which a net trained
        from scratch needs to place the box; averaging leaves only what padding reveals).
    dense_units: None, or the width of a shared Dense relu layer between pooling and heads.
    optimizer: anything compile takes ("adam", an optimizers.SGD(...)).
    """
    if base is None:
        input_shape = (64, 64, 3) if input_shape is None else tuple(input_shape)
        filters = _check_filters(filters, "localization_model")
        inputs, x = _localization_base(input_shape, filters)
    else:
        if not isinstance(base, Model) or len(base.inputs) != 1 or len(base.outputs) != 1 \
                or len(base.outputs[0].shape) != 4:
            raise ValueError(f"localization_model: base must be a Model with one input and one 4-D feature map "
                             f"output (include_top=False), got {base!r}")
        if input_shape is not None and tuple(input_shape) != tuple(base.inputs[0].shape[1:]):
            raise ValueError(f"localization_model: input_shape {tuple(input_shape)} differs from the base's "
                             f"input {tuple(base.inputs[0].shape[1:])}; leave input_shape=None with a base")
        inputs, x = base.inputs[0], base.outputs[0]
    if pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "flatten":
        x = layers.Flatten(name="flatten")(x)
    else:
        raise ValueError(f"localization_model: pooling must be 'avg' or 'flatten', got {pooling!r}")
    if dense_units is not None:
        if isinstance(dense_units, bool) or not isinstance(dense_units, (int, np.integer)) or dense_units < 1:
            raise ValueError(f"localization_model: dense_units must be None or a positive int, got {dense_units!r}")
        x = layers.Dense(int(dense_units), activation="relu", name="shared_dense")(x)
    class_output = _classifier(x, classes, name="class")
    box_output = layers.Dense(4, activation=box_activation, name="box")(x)
    model = Model(inputs, [class_output, box_output], name="localization_model")
    model.compile(optimizer=optimizer, loss=["sparse_categorical_crossentropy", "mse"],
                  loss_weights=list(loss_weights), metrics=[["accuracy"], []])
    return model


# ---------------------------------------------------------------------------- fully convolutional segmentation


def bilinear_upsampling_kernel(factor, channels):
    """The Conv2DTranspose kernel (2 factor, 2 factor, channels, channels) that upsamples
    each channel by `factor` with bilinear interpolation (FCN's initialization of its
    upsampling layers): channel c reads only channel c, through the separable tent
    1 - |i - center| / factor, center = factor - 1/2.

    With strides=factor and padding="same" (Keras' padding: factor // 2 rows before, for an
    even factor), input pixel j's tent is centered on output coordinate factor * (j + 1/2),
    where that pixel's center lies once enlarged, so away from the borders the layer gives
    the same values as bilinear resizing (half-pixel centers, torch's align_corners=False).
    """
    if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or factor < 1:
        raise ValueError(f"bilinear_upsampling_kernel: factor must be a positive int, got {factor!r}")
    if isinstance(channels, bool) or not isinstance(channels, (int, np.integer)) or channels < 1:
        raise ValueError(f"bilinear_upsampling_kernel: channels must be a positive int, got {channels!r}")
    size = 2 * int(factor)
    tent = 1 - np.abs(np.arange(size) - (factor - 0.5)) / factor
    kernel = np.zeros((size, size, channels, channels))
    for channel in range(channels):
        kernel[:, :, channel, channel] = np.outer(tent, tent)
    return kernel


def fcn_segmentation(input_shape=(32, 32, 3), classes=3, filters=(16, 32, 64), head_filters=None, bilinear=True):
    """A fully convolutional segmentation net with FCN-8s' skip connections (Long et al.,
    the chapter's figure of upsampling with skip layers), scaled down:

        Rescaling(1/255)
        per width f in filters: Conv(f, 3, same, relu) x2 -> max pool 2     ("blockN", as VGG's)
        fc6 Conv(head_filters, 3, same, relu), fc7 Conv(head_filters, 1, relu)   (the dense layers as convs)
        score_fr  Conv(classes, 1)                                    class scores at 1/2**n
        upscore2  ConvT(classes, 4, s2, same) + score of the pool one level up (1x1 conv)   -> 1/2**(n-1)
        upscore4  ConvT(classes, 4, s2, same) + score of the pool two levels up (1x1 conv)  -> 1/2**(n-2)
        upscore_final  ConvT(classes, 2k, sk, same) with k = 2**(n-2), to full size; softmax per pixel

    With five stages this is FCN-8s' geometry (scores at 1/32, skips from 1/16 and 1/8, a
    final x8). The default three stages go down to 1/8, as the book's Conv2DTranspose
    segmentation net (applications.segmentation_net) does, with the same widths (16, 32,
    64): the skips then come from 1/4 and 1/2 and the last upsampling is x2.

    As in the paper, the transposed convs have no bias and start as bilinear interpolation
    (bilinear=False: Glorot like every other kernel), and the skip scores start at zero, so
    the untrained net predicts the coarse scores upsampled and learns what the finer layers
    add. Every layer here is learnable. head_filters defaults to 2 * filters[-1].
    """
    filters = _check_filters(filters, "fcn_segmentation", minimum=3)
    input_shape = tuple(input_shape)
    if len(input_shape) != 3:
        raise ValueError(f"fcn_segmentation: input_shape must be (height, width, channels), got {input_shape!r}")
    reduction = 2 ** len(filters)
    for side in input_shape[:2]:
        if side is not None and side % reduction:
            raise ValueError(f"fcn_segmentation: the image sides must be multiples of {reduction} (2 to the number "
                             f"of stages, {len(filters)}) so the skips line up, got input_shape {input_shape!r}")
    if isinstance(classes, bool) or not isinstance(classes, (int, np.integer)) or classes < 1:
        raise ValueError(f"fcn_segmentation: classes must be a positive int, got {classes!r}")
    head_filters = 2 * filters[-1] if head_filters is None else head_filters
    if isinstance(head_filters, bool) or not isinstance(head_filters, (int, np.integer)) or head_filters < 1:
        raise ValueError(f"fcn_segmentation: head_filters must be a positive int, got {head_filters!r}")

    inputs = layers.Input(shape=input_shape)
    x = layers.Rescaling(1.0 / 255, name="rescaling")(inputs)
    pools = []
    for stage, width in enumerate(filters, start=1):
        for conv in (1, 2):
            x = layers.Conv2D(width, 3, padding="same", activation="relu", name=f"block{stage}_conv{conv}")(x)
        x = layers.MaxPooling2D(2, name=f"block{stage}_pool")(x)
        pools.append(x)
    x = layers.Conv2D(int(head_filters), 3, padding="same", activation="relu", name="fc6")(x)
    x = layers.Conv2D(int(head_filters), 1, activation="relu", name="fc7")(x)
    score = layers.Conv2D(classes, 1, name="score_fr")(x)
    upsampling = []
    for level, stage in ((2, len(filters) - 1), (4, len(filters) - 2)):
        up = layers.Conv2DTranspose(classes, 4, strides=2, padding="same", use_bias=False, name=f"upscore{level}")
        skip = layers.Conv2D(classes, 1, kernel_initializer="zeros", name=f"score_pool{stage}")(pools[stage - 1])
        score = layers.add([up(score), skip], name=f"fuse_pool{stage}")
        upsampling.append((up, 2))
    factor = 2 ** (len(filters) - 2)
    final = layers.Conv2DTranspose(classes, 2 * factor, strides=factor, padding="same", use_bias=False,
                                   name="upscore_final")
    outputs = layers.Activation("softmax", name="softmax")(final(score))
    upsampling.append((final, factor))
    if bilinear:
        for layer, layer_factor in upsampling:
            layer.set_weights([bilinear_upsampling_kernel(layer_factor, classes).astype(layer.kernel.dtype)])
    return Model(inputs, outputs, name="fcn_segmentation")
