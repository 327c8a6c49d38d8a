"""Seeds, names and the default float type: the small global state of convlab.

    set_seed(seed)     seed every random draw convlab makes (weight initializers, dropout)
    clear_session()    restart layer auto-naming (conv2d, conv2d_1, ... start again)
    set_floatx(dtype)  the dtype new layers get when they are not given one ("float32")
    serialize_object / deserialize_object   {"class_name", "config"} for losses, metrics,
                       optimizers and schedules (looked up by name; configs are data, not code)
    to_categorical(y, num_classes=None)   int labels -> one-hot rows (keras.utils.to_categorical)
    load_img, img_to_array, array_to_img, save_img, image_dataset_from_directory
                       convlab.data's, also here where keras.utils has them
    profile(model, x, training=True)      where a step's time goes, layer by layer (convlab.profiling)
"""

import random
import re
import sys

import numpy as np

__all__ = ["set_seed", "generator", "clear_session", "unique_name", "to_snake_case", "floatx", "set_floatx",
           "serialize_object", "deserialize_object", "to_categorical", "profile"]

_rng = np.random.default_rng()
_name_counts = {}
_floatx = "float32"


def set_seed(seed):
    """Seed convlab's global generator (and Python's and numpy's legacy ones), so runs repeat."""
    global _rng
    seed = int(seed)
    _rng = np.random.default_rng(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


def generator(seed=None):
    """A numpy Generator: the global one for None, a new one for an int, the one given otherwise."""
    if seed is None:
        return _rng
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, (int, np.integer)):
        return np.random.default_rng(int(seed))
    raise TypeError(f"seed must be None, an int or a numpy Generator, got {type(seed).__name__}")


def derived_seed():
    """A fresh seed drawn from the global generator (for objects that own a generator)."""
    return int(_rng.integers(0, 2**31 - 1))


def to_snake_case(name):
    """Keras' naming: Conv2DTranspose -> conv2d_transpose, BatchNormalization -> batch_normalization."""
    name = re.sub(r"(.)([A-Z][a-z0-9]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def unique_name(base):
    """base, then base_1, base_2, ... (as Keras names layers); clear_session() restarts the counts."""
    count = _name_counts.get(base, 0)
    _name_counts[base] = count + 1
    return base if count == 0 else f"{base}_{count}"


def clear_session():
    """Forget the layer names handed out so far (Keras' clear_session for naming)."""
    _name_counts.clear()


def floatx():
    return _floatx


def set_floatx(dtype):
    """Set the dtype of layers created without one: "float32" (default) or "float64"."""
    global _floatx
    if dtype not in ("float16", "float32", "float64"):
        raise ValueError(f"set_floatx: dtype must be 'float16', 'float32' or 'float64', got {dtype!r}")
    _floatx = dtype


def serialize_object(obj):
    """{"class_name": ..., "config": obj.get_config()}: an object as data."""
    return {"class_name": type(obj).__name__, "config": obj.get_config()}


def deserialize_object(entry, classes, kind):
    """The object serialize_object described, rebuilt by from_config of the class named in
    `entry`, which must be one of `classes` ({name: class}); `kind` names them in errors."""
    class_name = entry.get("class_name") if isinstance(entry, dict) else None
    if class_name not in classes:
        raise ValueError(f"unknown {kind} class {class_name!r}; known: {', '.join(sorted(classes))}")
    return classes[class_name].from_config(entry["config"])


def to_categorical(y, num_classes=None, dtype="float32"):
    """Integer class labels as one-hot rows, as keras.utils.to_categorical returns them.

    y: labels in 0..num_classes-1, of any shape; a last axis of size 1 is dropped first
    (Keras' rule), so labels (n,) and (n, 1) both give (n, num_classes), and (n, k) gives
    (n, k, num_classes). num_classes: None for max(y) + 1.
    Integral floats (3.0) are taken; other values (3.5, -1, NaN) are refused.
    """
    labels = np.asarray(y)
    if labels.dtype == np.bool_ or not (np.issubdtype(labels.dtype, np.integer)
                                        or np.issubdtype(labels.dtype, np.floating)):
        raise ValueError(f"to_categorical: y must hold integer class labels, got an array of dtype {labels.dtype}")
    shape = labels.shape
    if len(shape) > 1 and shape[-1] == 1:
        shape = shape[:-1]
    flat = labels.reshape(-1)
    if np.issubdtype(flat.dtype, np.floating):
        whole = np.isfinite(flat) & (flat == np.floor(flat))
        if not whole.all():
            raise ValueError(f"to_categorical: y must hold integer class labels, got the value {flat[~whole][0].item()!r}")
    flat = flat.astype(np.int64)
    if num_classes is None:
        if flat.size == 0:
            raise ValueError("to_categorical: y is empty, so num_classes cannot be inferred; give num_classes")
        num_classes = int(flat.max()) + 1
    elif isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"to_categorical: num_classes must be a positive int or None, got {num_classes!r}")
    if flat.size and (flat.min() < 0 or flat.max() >= num_classes):
        bad = int(flat.min()) if flat.min() < 0 else int(flat.max())
        raise ValueError(f"to_categorical: y holds the label {bad}, expected labels in 0..{int(num_classes) - 1} "
                         f"for num_classes={num_classes}")
    categorical = np.zeros((flat.size, int(num_classes)), dtype=dtype)
    categorical[np.arange(flat.size), flat] = 1
    return categorical.reshape(tuple(shape) + (int(num_classes),))


def profile(model, x, training=True, repeats=5, warmup=1, file=sys.stdout, **peaks):
    """Time one step of `model` on the batch `x` layer by layer and print a roofline table: FLOPs,
    bytes, forward and backward time, GFLOP/s and GB/s against the machine's peaks. Returns the
    rows as dicts. See convlab.profiling for the cost model, the peaks and how times are taken."""
    from .profiling import profile as profile_model  # imported here: it needs the layers, which need utils

    return profile_model(model, x, training=training, repeats=repeats, warmup=warmup, file=file, **peaks)


# Keras keeps its image helpers in keras.utils too (Deep Learning with Python, 2nd ed., calls
# keras.utils.load_img, img_to_array, array_to_img and image_dataset_from_directory): the same
# functions as convlab.data's, looked up when first asked for (convlab.data needs the layers,
# which need this module).
_DATA_FUNCTIONS = ("load_img", "img_to_array", "array_to_img", "save_img", "image_dataset_from_directory")


def __getattr__(name):
    if name in _DATA_FUNCTIONS:
        from . import data

        return getattr(data, name)
    raise AttributeError(f"module 'convlab.utils' has no attribute {name!r}")
