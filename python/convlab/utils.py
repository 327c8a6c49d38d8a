"""Seeds, names and the default float type: the small global state of convlab.

    set_seed(seed)     seed every random draw convlab makes (weight initializers, dropout)
    clear_session()    restart layer auto-naming (conv2d, conv2d_1, ... start again)
    set_floatx(dtype)  the dtype new layers get when they are not given one ("float32")
    serialize_object / deserialize_object   {"class_name", "config"} for losses, metrics,
                       optimizers and schedules (looked up by name; configs are data, not code)
"""

import random
import re

import numpy as np

__all__ = ["set_seed", "generator", "clear_session", "unique_name", "to_snake_case", "floatx", "set_floatx",
           "serialize_object", "deserialize_object"]

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
