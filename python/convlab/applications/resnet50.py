"""ResNet-50 twice: as keras.applications.ResNet50 builds it, and as torchvision builds it.

The two differ in more than names, so a file of one does not fit the other:

                      Keras (resnet50)                   torchvision (torchvision_resnet50)
    stride 2 of a     on the first 1x1 conv              on the 3x3 conv (ResNet "v1.5")
    stage's block 1
    3x3 conv padding  'same' (TF: for an even input      symmetric 1 on every side, here an
                      and stride 2, 0 before, 1 after)   explicit ZeroPadding2D(1) + 'valid' conv
    conv biases       yes                                no (a BN follows each conv)
    BN epsilon        1.001e-5                           1e-5
    stem              ZeroPadding2D(3), 7x7 s2 valid,    the same, then ZeroPadding2D(1) and
                      ZeroPadding2D(1), max pool 3 s2    max pool 3 s2 (torch pads with -inf;
                                                         zeros are the same after the relu)
    parameters        25,636,712 with the top            25,557,032 trainable with the top

torchvision_resnet50 names its layers by torchvision's module paths (conv1, bn1,
layer1.0.conv1, layer1.0.downsample.0, fc, ...), so a torchvision state dict maps onto it
by name: weight_import.load_torch_state_dict(model, state_dict).
"""

from .. import layers
from ..models import Model
from . import keras_conventions as conventions

__all__ = ["resnet50", "torchvision_resnet50"]

_STAGES = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))  # (filters, blocks, stride of block 1)


def _keras_block(x, filters, stride, conv_shortcut, name):
    """keras.applications.resnet.residual_block_v1: 1x1 (stride), 3x3 same, 1x1 to 4*filters."""
    epsilon = 1.001e-5
    if conv_shortcut:
        shortcut = layers.Conv2D(4 * filters, 1, strides=stride, name=f"{name}_0_conv")(x)
        shortcut = layers.BatchNormalization(epsilon=epsilon, name=f"{name}_0_bn")(shortcut)
    else:
        shortcut = x
    x = layers.Conv2D(filters, 1, strides=stride, name=f"{name}_1_conv")(x)
    x = layers.BatchNormalization(epsilon=epsilon, name=f"{name}_1_bn")(x)
    x = layers.Activation("relu", name=f"{name}_1_relu")(x)
    x = layers.Conv2D(filters, 3, padding="same", name=f"{name}_2_conv")(x)
    x = layers.BatchNormalization(epsilon=epsilon, name=f"{name}_2_bn")(x)
    x = layers.Activation("relu", name=f"{name}_2_relu")(x)
    x = layers.Conv2D(4 * filters, 1, name=f"{name}_3_conv")(x)
    x = layers.BatchNormalization(epsilon=epsilon, name=f"{name}_3_bn")(x)
    x = layers.Add(name=f"{name}_add")([shortcut, x])
    return layers.Activation("relu", name=f"{name}_out")(x)


def resnet50(include_top=True, weights=None, input_shape=None, pooling=None, classes=1000,
             classifier_activation="softmax", name="resnet50"):
    """keras.applications.ResNet50's arguments (without input_tensor), and no download:
    weights is None or the path of a weights file (Keras'
    resnet50_weights_tf_dim_ordering_tf_kernels[_notop].h5, a .weights.h5 or .keras file);
    input_shape defaults to (224, 224, 3) with the top and (None, None, 3) without; at
    least 32x32. 25,636,712 parameters with the top (25,583,592 trainable)."""
    where = "resnet50"
    conventions.check_weights(where, weights, include_top, classifier_activation, (
        "resnet", "resnet50_weights_tf_dim_ordering_tf_kernels.h5" if include_top
        else "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"))
    input_shape = conventions.obtain_input_shape(where, input_shape, default_size=224, min_size=32,
                                                 require_flatten=include_top)
    conventions.check_pooling(where, pooling)
    inputs = layers.Input(shape=input_shape)
    x = layers.ZeroPadding2D(((3, 3), (3, 3)), name="conv1_pad")(inputs)
    x = layers.Conv2D(64, 7, strides=2, name="conv1_conv")(x)
    x = layers.BatchNormalization(epsilon=1.001e-5, name="conv1_bn")(x)
    x = layers.Activation("relu", name="conv1_relu")(x)
    x = layers.ZeroPadding2D(((1, 1), (1, 1)), name="pool1_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    for stage, (filters, blocks, stride) in enumerate(_STAGES, start=2):
        for block in range(1, blocks + 1):
            x = _keras_block(x, filters, stride if block == 1 else 1, conv_shortcut=block == 1,
                             name=f"conv{stage}_block{block}")
    x = conventions.classifier_top(x, where, include_top, pooling, classes, classifier_activation,
                                   avg_pool_name="avg_pool", max_pool_name="max_pool")
    return conventions.load_weights(Model(inputs, x, name=name), weights)


def _torchvision_bottleneck(x, filters, stride, downsample, name):
    """torchvision.models.resnet.Bottleneck: conv1 1x1, conv2 3x3 (stride, padding 1), conv3 1x1
    to 4*filters; downsample = 1x1 conv (stride) + BN when the shape changes."""
    epsilon = 1e-5
    shortcut = x
    if downsample:
        shortcut = layers.Conv2D(4 * filters, 1, strides=stride, use_bias=False, name=f"{name}.downsample.0")(x)
        shortcut = layers.BatchNormalization(epsilon=epsilon, momentum=0.9, name=f"{name}.downsample.1")(shortcut)
    x = layers.Conv2D(filters, 1, use_bias=False, name=f"{name}.conv1")(x)
    x = layers.BatchNormalization(epsilon=epsilon, momentum=0.9, name=f"{name}.bn1")(x)
    x = layers.Activation("relu", name=f"{name}.relu1")(x)
    x = layers.ZeroPadding2D(1, name=f"{name}.conv2_pad")(x)  # torch's padding=1, whatever the stride
    x = layers.Conv2D(filters, 3, strides=stride, use_bias=False, name=f"{name}.conv2")(x)
    x = layers.BatchNormalization(epsilon=epsilon, momentum=0.9, name=f"{name}.bn2")(x)
    x = layers.Activation("relu", name=f"{name}.relu2")(x)
    x = layers.Conv2D(4 * filters, 1, use_bias=False, name=f"{name}.conv3")(x)
    x = layers.BatchNormalization(epsilon=epsilon, momentum=0.9, name=f"{name}.bn3")(x)
    x = layers.Add(name=f"{name}.add")([x, shortcut])
    return layers.Activation("relu", name=f"{name}.relu3")(x)


def torchvision_resnet50(include_top=True, weights=None, input_shape=None, pooling=None, classes=1000,
                         classifier_activation=None, name="torchvision_resnet50", blocks=(3, 4, 6, 3)):
    """torchvision.models.resnet50's architecture in NHWC, with its module paths as layer names.

    weights: None, or a torchvision state dict (a dict of arrays/tensors, or the path of a
    .pth file) loaded by weight_import.load_torch_state_dict. classifier_activation defaults
    to None: torchvision's fc gives logits. blocks: bottleneck blocks per stage (3, 4, 6, 3
    is ResNet-50; a smaller tuple builds a smaller net of the same naming scheme).
    25,557,032 trainable parameters with the top, torchvision's count (its BN running statistics
    are buffers; here they are non-trainable weights: 25,610,152 in all).
    """
    where = "torchvision_resnet50"
    if isinstance(weights, str) and weights == "imagenet":
        raise NotImplementedError(
            f"{where}: weights='imagenet' would download torchvision's file, and convlab never downloads: "
            "pass the path of torchvision's resnet50 .pth file (or its state dict) as weights=, or weights=None"
        )
    if len(blocks) != 4 or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in blocks):
        raise ValueError(f"{where}: blocks must be 4 positive ints (blocks per stage), got {blocks!r}")
    input_shape = conventions.obtain_input_shape(where, input_shape, default_size=224, min_size=32,
                                                 require_flatten=include_top)
    conventions.check_pooling(where, pooling)
    inputs = layers.Input(shape=input_shape)
    x = layers.ZeroPadding2D(3, name="conv1_pad")(inputs)
    x = layers.Conv2D(64, 7, strides=2, use_bias=False, name="conv1")(x)
    x = layers.BatchNormalization(epsilon=1e-5, momentum=0.9, name="bn1")(x)
    x = layers.Activation("relu", name="relu")(x)
    x = layers.ZeroPadding2D(1, name="maxpool_pad")(x)  # zeros for torch's -inf: the input is >= 0
    x = layers.MaxPooling2D(3, strides=2, name="maxpool")(x)
    for stage, ((filters, _, stride), count) in enumerate(zip(_STAGES, blocks), start=1):
        for block in range(count):
            x = _torchvision_bottleneck(x, filters, stride if block == 0 else 1, downsample=block == 0,
                                        name=f"layer{stage}.{block}")
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avgpool")(x)
        x = layers.Dense(classes, activation=classifier_activation, name="fc")(x)
    elif pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avgpool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(name="maxpool_global")(x)
    model = Model(inputs, x, name=name)
    if weights is not None:
        from .weight_import import load_torch_state_dict

        load_torch_state_dict(model, weights)
    return model
