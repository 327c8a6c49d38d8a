"""MobileNetV2 (Sandler et al., 2018) as keras.applications.MobileNetV2 builds it, layer for
layer and name for name.

    Conv1 3x3 s2 same (32*alpha), bn_Conv1, Conv1_relu (ReLU6)
    17 inverted residual blocks: [block_N_expand 1x1 to expansion*in, BN, ReLU6]
        [ZeroPadding2D(correct_pad) when the stride is 2] depthwise 3x3 (same, or valid after
        the padding), BN, ReLU6; project 1x1 to filters*alpha (linear), BN;
        Add with the input when the shape is kept
    Conv_1 1x1 to 1280 (more for alpha > 1), Conv_1_bn, out_relu; global pool, predictions

Every BatchNormalization has epsilon 1e-3 and momentum 0.999; no conv has a bias. The stride-2
depthwise convs pad explicitly (correct_pad: one pixel less before than after for an even
input), which is also what TF's 'same' would pad. 3,538,984 parameters with the
top at alpha 1 (3,504,872 trainable).
"""

from .. import layers
from ..models import Model
from . import keras_conventions as conventions

__all__ = ["mobilenet_v2"]

# (filters, stride, expansion) of blocks 0..16
_BLOCKS = ((16, 1, 1), (24, 2, 6), (24, 1, 6), (32, 2, 6), (32, 1, 6), (32, 1, 6), (64, 2, 6), (64, 1, 6),
           (64, 1, 6), (64, 1, 6), (96, 1, 6), (96, 1, 6), (96, 1, 6), (160, 2, 6), (160, 1, 6), (160, 1, 6),
           (320, 1, 6))


def _make_divisible(value, divisor, min_value=None):
    """Round channel counts to a multiple of divisor, never more than 10% down (Keras' rule)."""
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _batch_norm(name):
    return layers.BatchNormalization(epsilon=1e-3, momentum=0.999, name=name)


def _inverted_res_block(inputs, expansion, stride, alpha, filters, block_id):
    in_channels = inputs.shape[-1]
    pointwise_filters = _make_divisible(int(filters * alpha), 8)
    x = inputs
    prefix = f"block_{block_id}_"
    if block_id:
        x = layers.Conv2D(expansion * in_channels, 1, padding="same", use_bias=False, name=f"{prefix}expand")(x)
        x = _batch_norm(f"{prefix}expand_BN")(x)
        x = layers.ReLU(6.0, name=f"{prefix}expand_relu")(x)
    else:
        prefix = "expanded_conv_"
    if stride == 2:
        x = layers.ZeroPadding2D(conventions.correct_pad(x.shape[1:3], 3), name=f"{prefix}pad")(x)
    x = layers.DepthwiseConv2D(3, strides=stride, use_bias=False, padding="same" if stride == 1 else "valid",
                               name=f"{prefix}depthwise")(x)
    x = _batch_norm(f"{prefix}depthwise_BN")(x)
    x = layers.ReLU(6.0, name=f"{prefix}depthwise_relu")(x)
    x = layers.Conv2D(pointwise_filters, 1, padding="same", use_bias=False, name=f"{prefix}project")(x)
    x = _batch_norm(f"{prefix}project_BN")(x)
    if in_channels == pointwise_filters and stride == 1:
        return layers.Add(name=f"{prefix}add")([inputs, x])
    return x


def mobilenet_v2(input_shape=None, alpha=1.0, include_top=True, weights=None, pooling=None, classes=1000,
                 classifier_activation="softmax", name=None):
    """keras.applications.MobileNetV2's arguments, in its order (without input_tensor), and no
    download: weights is None or the path of a weights file (Keras'
    mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{alpha}_{rows}[_no_top].h5, a .weights.h5
    or .keras file). input_shape defaults to (224, 224, 3) with the top and (None, None, 3)
    without; at least 32x32. alpha scales the widths (Keras' pretrained: 0.35 to 1.4)."""
    where = "mobilenet_v2"
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or alpha <= 0:
        raise ValueError(f"{where}: alpha must be a positive number, got {alpha!r}")
    rows = 224
    if input_shape is not None and len(input_shape) == 3 and input_shape[0] == input_shape[1] \
            and input_shape[0] in (96, 128, 160, 192, 224):
        rows = input_shape[0]
    top_name = "" if include_top else "_no_top"
    conventions.check_weights(where, weights, include_top, classifier_activation, (
        "mobilenet_v2", f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}_{rows}{top_name}.h5"))
    input_shape = conventions.obtain_input_shape(where, input_shape, default_size=rows, min_size=32,
                                                 require_flatten=include_top)
    conventions.check_pooling(where, pooling)
    inputs = layers.Input(shape=input_shape)
    first_filters = _make_divisible(32 * alpha, 8)
    x = layers.Conv2D(first_filters, 3, strides=2, padding="same", use_bias=False, name="Conv1")(inputs)
    x = _batch_norm("bn_Conv1")(x)
    x = layers.ReLU(6.0, name="Conv1_relu")(x)
    for block_id, (filters, stride, expansion) in enumerate(_BLOCKS):
        x = _inverted_res_block(x, expansion, stride, alpha, filters, block_id)
    last_block_filters = _make_divisible(1280 * alpha, 8) if alpha > 1.0 else 1280
    x = layers.Conv2D(last_block_filters, 1, use_bias=False, name="Conv_1")(x)
    x = _batch_norm("Conv_1_bn")(x)
    x = layers.ReLU(6.0, name="out_relu")(x)
    x = conventions.classifier_top(x, where, include_top, pooling, classes, classifier_activation)
    name = f"mobilenetv2_{alpha:0.2f}_{input_shape[0]}" if name is None else name
    return conventions.load_weights(Model(inputs, x, name=name), weights)
