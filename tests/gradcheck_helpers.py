"""Gradient checks through layers and models with respect to their inputs and weights.

convlab.testing.gradcheck differentiates a function of its inputs. To check a layer's
weight gradients too, the function below takes the weights as extra inputs and, for the
duration of the call, puts those tensors in the attributes the layers compute with
(`layer.kernel`, `layer.gamma`, ...). The layer code that runs is unchanged.
"""

import contextlib

import numpy as np

from convlab.testing import gradcheck


def _all_layers(layer):
    found, stack = [], [layer]
    while stack:
        current = stack.pop()
        if all(current is not f for f in found):
            found.append(current)
            stack.extend(current._sublayers)
    return found


def _owners(layer, variables):
    """(layer, attribute name) that holds each variable."""
    owners = []
    for variable in variables:
        for candidate in _all_layers(layer):
            names = [name for name, value in vars(candidate).items() if value is variable]
            if names:
                owners.append((candidate, names[0]))
                break
        else:
            raise LookupError(f"no layer attribute holds {variable.name}")
    return owners


@contextlib.contextmanager
def weights_replaced(owners, tensors):
    saved = [getattr(obj, name) for obj, name in owners]
    for (obj, name), tensor in zip(owners, tensors):
        object.__setattr__(obj, name, tensor)
    try:
        yield
    finally:
        for (obj, name), value in zip(owners, saved):
            object.__setattr__(obj, name, value)


def layer_gradcheck(layer, inputs, training=False, **gradcheck_kwargs):
    """gradcheck of layer(inputs) with respect to every input array and trainable weight.

    inputs: one float64 array or a list of them (for Add, Concatenate, multi-input models).
    """
    many = isinstance(inputs, list)
    arrays = list(inputs) if many else [inputs]
    layer(inputs, training=training)  # build the weights
    variables = layer.trainable_weights
    owners = _owners(layer, variables)
    count = len(arrays)

    def fn(*tensors):
        with weights_replaced(owners, tensors[count:]):
            given = list(tensors[:count]) if many else tensors[0]
            output = layer(given, training=training)
        return output * 1.0  # a copy: gradcheck perturbs inputs in place, a view would follow

    return gradcheck(fn, arrays + [np.array(v.numpy(), dtype=np.float64) for v in variables], **gradcheck_kwargs)
