"""Activations by name, as Keras layers take them: "relu", "relu6", "sigmoid", "softmax", "tanh",
"linear" (or None), or any callable on Tensors."""

from .ops import activations as _ops

__all__ = ["get", "serialize"]

_BY_NAME = {
    "relu": _ops.relu, "relu6": _ops.relu6, "sigmoid": _ops.sigmoid, "softmax": _ops.softmax, "tanh": _ops.tanh,
    "linear": _ops.linear, "log_softmax": _ops.log_softmax,
}


def get(identifier):
    """The activation function for a name, None ("linear") or a callable."""
    if identifier is None:
        return _ops.linear
    if isinstance(identifier, str):
        if identifier not in _BY_NAME:
            raise ValueError(f"unknown activation {identifier!r}; known: {', '.join(sorted(_BY_NAME))}, or a callable")
        return _BY_NAME[identifier]
    if callable(identifier):
        return identifier
    raise TypeError(f"activation must be a name, None or a callable, got {identifier!r}")


def serialize(activation):
    """The name of an activation function (the callable's __name__ for one not built in)."""
    for name, fn in _BY_NAME.items():
        if fn is activation:
            return name
    return getattr(activation, "__name__", repr(activation))
