"""What the Keras ImageNet architectures share (after keras.applications.imagenet_utils): the
check of the `weights` argument, Keras' input-shape rule, the classifier top or the pooling
that replaces it, and the asymmetric padding MobileNet puts before a strided convolution.

convlab never downloads: `weights="imagenet"` raises an error that names Keras' file and
where it lives, so that the user can fetch it once and pass its path (`weights="....h5"`).
"""

import os

from .. import layers

__all__ = ["check_weights", "obtain_input_shape", "check_pooling", "classifier_top", "correct_pad", "load_weights"]

KERAS_WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"


def check_weights(where, weights, include_top, classifier_activation, keras_file):
    """Keras' checks of `weights` (None, "imagenet" or a path), before anything is built.

    keras_file: (folder, file name) of Keras' pretrained file for this model and top, named in
    the error that weights="imagenet" raises.
    """
    if weights is None:
        return
    if isinstance(weights, str) and weights == "imagenet":
        folder, name = keras_file
        raise NotImplementedError(
            f"{where}: weights='imagenet' would download Keras' pretrained file, and convlab never downloads "
            f"(it works offline). Fetch {name} yourself ({KERAS_WEIGHTS_URL}{folder}/{name}) and pass its path, "
            f"weights='/path/to/{name}', or pass weights=None for random weights"
        )
    if not isinstance(weights, (str, os.PathLike)) or not os.path.isfile(weights):
        raise ValueError(
            f"{where}: weights must be None (random weights), 'imagenet' or the path of a weights file "
            f"(Keras .h5 / .weights.h5 / .keras, or convlab's own), got {weights!r}"
            + (" (no such file)" if isinstance(weights, (str, os.PathLike)) else "")
        )
    if include_top and classifier_activation not in (None, "softmax", "linear"):
        raise ValueError(
            f"{where}: with pretrained weights and include_top=True the classifier activation must be "
            f"None or 'softmax' (as in Keras), got {classifier_activation!r}"
        )


def obtain_input_shape(where, input_shape, default_size, min_size, require_flatten):
    """Keras' rule (channels last): no input_shape gives (default, default, 3) for a model with
    its top and (None, None, 3), any size, without; a given shape is checked against min_size."""
    if input_shape is None:
        return (default_size, default_size, 3) if require_flatten else (None, None, 3)
    try:
        shape = tuple(None if n is None else int(n) for n in input_shape)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) != 3 or shape[2] is None or any(n is not None and n < 1 for n in shape):
        raise ValueError(f"{where}: input_shape must be (height, width, channels), got {input_shape!r}")
    if any(n is not None and n < min_size for n in shape[:2]):
        raise ValueError(f"{where}: input size must be at least {min_size}x{min_size}, got input_shape={shape}")
    if require_flatten and None in shape:
        raise ValueError(f"{where}: with include_top=True the input_shape must be fully known, got {shape}")
    return shape


def check_pooling(where, pooling):
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"{where}: pooling must be None, 'avg' or 'max', got {pooling!r}")


def classifier_top(x, where, include_top, pooling, classes, classifier_activation, avg_pool_name=None,
                   max_pool_name=None):
    """GlobalAveragePooling2D + Dense("predictions") with the top; else the optional pooling."""
    check_pooling(where, pooling)
    if include_top:
        if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1:
            raise ValueError(f"{where}: classes must be a positive int, got {classes!r}")
        x = layers.GlobalAveragePooling2D(name=avg_pool_name)(x)
        return layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    if pooling == "avg":
        return layers.GlobalAveragePooling2D(name=avg_pool_name)(x)
    if pooling == "max":
        return layers.GlobalMaxPooling2D(name=max_pool_name)(x)
    return x


def correct_pad(input_size, kernel_size):
    """The ZeroPadding2D before a stride-2 'valid' conv that MobileNet uses instead of 'same':
    ((k//2 - adjust, k//2), ...) with adjust 1 for an even (or unknown) size, 0 for odd."""
    kernel = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
    adjust = [1 if n is None else 1 - n % 2 for n in input_size]
    return tuple((k // 2 - a, k // 2) for k, a in zip(kernel, adjust))


def load_weights(model, weights):
    """Load the file passed as `weights=` (checked by check_weights) into the new model."""
    if weights is not None:
        model.load_weights(weights)
    return model
