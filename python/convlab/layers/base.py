"""Layer, the symbolic KerasTensor, and the Node that records one layer call in a graph.

A layer is called two ways, as in Keras:
  - eagerly, on arrays or Tensors: it builds its weights from the input shape the first
    time, then runs `call` and returns Tensors (recorded for backward when they track);
  - symbolically, on KerasTensors (from `Input`): nothing is computed; the layer builds,
    infers the output shape, and returns new KerasTensors linked to their inputs by a Node.
    Those links are the graph that `Model(inputs, outputs)` runs.
"""

import contextlib
import contextvars
import functools
import inspect

import numpy as np

from .. import initializers, utils
from ..autograd import Tensor, Variable, _to_device, default_device, no_grad
from ..ops import math as math_ops

__all__ = ["Layer", "KerasTensor", "Node", "check_int", "is_int", "MAX_INT"]

# The `training` flag of the layer call in progress. A layer called without one inside
# another layer's call (a custom layer's `call` that runs `layer(z)`, as the books write
# them) takes its caller's, as Keras' call context does: batch norm and dropout then train
# when the model trains.
_enclosing_training = contextvars.ContextVar("convlab_enclosing_training", default=None)

# The kernels' geometry (csrc/common) holds sizes, strides and counts in 32-bit ints: a layer
# refuses anything larger in its constructor, before it could reach the native binding.
MAX_INT = 2**31 - 1


def is_int(value):
    """A Python or numpy integer, not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_int(value, name, layer, minimum=1):
    """An int in [minimum, 2**31 - 1] as a Python int; errors name the argument and the layer."""
    if not is_int(value) or not minimum <= value <= MAX_INT:
        raise ValueError(f"{layer}: {name} must be an int in [{minimum}, {MAX_INT}], got {value!r}")
    return int(value)


def flatten(structure):
    """A tensor, or a (nested) list/tuple of tensors -> flat list."""
    if isinstance(structure, (list, tuple)):
        return [t for item in structure for t in flatten(item)]
    return [structure]


def map_structure(fn, structure):
    if isinstance(structure, (list, tuple)):
        return type(structure)(map_structure(fn, item) for item in structure)
    return fn(structure)


def format_shapes(shapes):
    if isinstance(shapes, list):
        return "[" + ", ".join(format_shapes(s) for s in shapes) + "]"
    return str(tuple(shapes))


class KerasTensor:
    """A symbolic tensor: a shape (None for the batch axis), a dtype, and the layer call
    (Node) that produces it. It holds no values; it is the wiring of a functional model."""

    def __init__(self, shape, dtype="float32", node=None, index=0, name=None):
        self.shape = tuple(None if n is None else int(n) for n in shape)
        self.dtype = np.dtype(dtype).name
        self.node = node
        self.index = index
        self.name = name

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def layer(self):
        """The layer whose call produced this tensor."""
        return self.node.layer

    def __repr__(self):
        return f"<KerasTensor shape={self.shape}, dtype={self.dtype}, name={self.name}>"

    def _no_value(self, *args):
        raise TypeError(
            f"{self!r} is symbolic: it has no values, and arithmetic on it is not recorded in "
            "the model. Use layers for it (layers.add([a, b]), layers.Rescaling, or "
            "layers.Lambda(fn)), or call the model on data to get Tensors."
        )

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = _no_value
    __matmul__ = __neg__ = __getitem__ = __array__ = numpy = _no_value


class Node:
    """One call of a layer on symbolic tensors: the inputs it read and the outputs it made."""

    def __init__(self, layer, call_inputs, outputs, call_kwargs):
        self.layer = layer
        self.call_inputs = call_inputs  # as the layer received them: a tensor or a list
        self.input_tensors = flatten(call_inputs)
        self.outputs = outputs
        self.call_kwargs = call_kwargs
        for index, tensor in enumerate(outputs):
            tensor.node, tensor.index = self, index
            suffix = "" if len(outputs) == 1 else f"_{index}"
            tensor.name = f"{layer.name}/output{suffix}"

    @property
    def node_index(self):
        return self.layer._inbound_nodes.index(self)


class Layer:
    """Base of every layer: name, dtype, weights, build-on-first-call, config, shape checks.

    A subclass sets `input_ndim` (the rank it needs, batch included) or `min_ndim`, creates
    its weights in `build(input_shape)` with `add_weight`, computes in `call(inputs)`, and
    returns its constructor arguments from `get_config()`.
    """

    input_ndim = None
    min_ndim = None
    input_description = ""  # what the axes mean, for error messages
    input_hint = ""  # how to fix a wrong rank, for error messages

    def __init__(self, name=None, trainable=True, dtype=None, input_shape=None,
                 batch_input_shape=None, batch_size=None, **kwargs):
        if kwargs:
            raise TypeError(f"{type(self).__name__}: unexpected keyword argument(s) {', '.join(map(repr, kwargs))}")
        if name is not None and (not isinstance(name, str) or not name or "/" in name):
            raise ValueError(f"{type(self).__name__}: name must be a non-empty string without '/', got {name!r}")
        object.__setattr__(self, "_sublayers", [])
        self.name = name or utils.unique_name(utils.to_snake_case(type(self).__name__))
        self.dtype = np.dtype(dtype or utils.floatx()).name
        if np.dtype(self.dtype).kind != "f":
            raise ValueError(f"{self._describe()}: dtype must be a float type, got {dtype!r}")
        self._trainable = bool(trainable)
        self.built = False
        self._variables = []
        self._inbound_nodes = []
        self._last_axis = None  # the last-axis size the weights were built for
        if input_shape is not None:
            batch_input_shape = (batch_size,) + tuple(input_shape)
        self._batch_input_shape = None if batch_input_shape is None else tuple(batch_input_shape)
        self._call_takes_training = "training" in inspect.signature(self.call).parameters

    def __init_subclass__(cls, **kwargs):
        # Whoever calls build (the first call, or the user directly, as in Keras), the layer
        # is built afterwards and is not built again.
        super().__init_subclass__(**kwargs)
        if "build" in cls.__dict__:
            build = cls.__dict__["build"]

            @functools.wraps(build)
            def build_once(self, input_shape=None):
                build(self, input_shape)
                self.built = True

            cls.build = build_once

    def __setattr__(self, name, value):
        # Layers kept as attributes of a layer (a custom block) are its sublayers: their
        # weights are its weights, as in Keras. So are the layers of a list, tuple or dict
        # attribute (Géron's `self.main_layers = [Conv2D(...), BatchNormalization(), ...]`).
        if not name.startswith("_"):
            items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else [value]
            for item in items:
                if isinstance(item, Layer) and item is not self and item not in self._sublayers:
                    self._sublayers.append(item)
        object.__setattr__(self, name, value)

    def _describe(self):
        return f"{type(self).__name__} layer '{self.name}'"

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r}, built={self.built}>"

    # ---- weights

    def add_weight(self, name, shape, initializer="glorot_uniform", trainable=True, dtype=None):
        """Create a weight Variable named '<layer name>/<name>' from an initializer."""
        shape = tuple(int(n) for n in shape)
        value = initializers.get(initializer)(shape, dtype=dtype or self.dtype)
        data = np.asarray(value, dtype=dtype or self.dtype)
        if default_device() is not None:  # inside convlab.device(...)
            data = _to_device(data, default_device())
        variable = Variable(data, trainable=trainable, name=f"{self.name}/{name}")
        variable._set_layer_trainable(self._trainable)
        self._variables.append(variable)
        return variable

    @property
    def trainable(self):
        return self._trainable

    @trainable.setter
    def trainable(self, value):
        """Freezing a layer freezes its sublayers too; frozen weights record no gradient."""
        self._trainable = bool(value)
        for variable in self._variables:
            variable._set_layer_trainable(value)
        for layer in self._sublayers:
            layer.trainable = value

    @property
    def weights(self):
        return _unique(self._variables + [w for layer in self._sublayers for w in layer.weights])

    @property
    def trainable_weights(self):
        if not self._trainable:
            return []
        own = [v for v in self._variables if v.trainable]
        return _unique(own + [w for layer in self._sublayers for w in layer.trainable_weights])

    @property
    def non_trainable_weights(self):
        if not self._trainable:
            return self.weights
        own = [v for v in self._variables if not v.trainable]
        return _unique(own + [w for layer in self._sublayers for w in layer.non_trainable_weights])

    @property
    def variables(self):
        return self.weights

    def get_weights(self):
        """Copies of the weights' values as numpy arrays, in the order of `weights` (copies: later
        training does not change them, so they can be kept and restored with set_weights)."""
        return [np.array(w.numpy(), copy=True) for w in self.weights]

    def set_weights(self, weights):
        """Set every weight from a list of arrays (same order and shapes as get_weights())."""
        mine = self.weights
        weights = list(weights)
        if len(weights) != len(mine):
            expected = ", ".join(f"{w.name} {w.shape}" for w in mine) or "none"
            raise ValueError(
                f"{self._describe()}: set_weights got {len(weights)} arrays, expected {len(mine)} "
                f"({expected})" + ("" if mine or self.built else "; the layer is not built yet")
            )
        weights = [value.data if isinstance(value, Tensor) else value for value in weights]
        for variable, value in zip(mine, weights):
            shape = tuple(value.shape) if hasattr(value, "shape") else np.shape(value)
            if shape != variable.shape:
                raise ValueError(
                    f"{self._describe()}: set_weights: weight '{variable.name}' has shape "
                    f"{variable.shape}, got an array of shape {shape}"
                )
        self.check_weight_values({id(variable): value for variable, value in zip(mine, weights)})
        for variable, value in zip(mine, weights):
            variable.assign(value)

    def check_weight_values(self, values):
        """Refuse values that no training could produce and that would make the layer compute
        nonsense (a negative variance, say), before any weight is changed.

        values: {id(variable): array} for some of this layer's weights (set_weights and
        load_model pass every one). Each layer checks its own (`check_own_weight_values`),
        then its sublayers theirs; errors are ValueErrors that name the layer and the weight.
        """
        self.check_own_weight_values(values)
        for layer in self._sublayers:
            layer.check_weight_values(values)

    def check_own_weight_values(self, values):
        """Override to check this layer's own weights (see check_weight_values); the default accepts any."""

    def count_params(self):
        if not self.built:
            raise ValueError(
                f"{self._describe()} is not built yet, so its weights do not exist: call it on an "
                "input (or call build(input_shape)) first"
            )
        return int(sum(w.size for w in self.weights))

    def to(self, device):
        """Move every weight to `device` ("cpu" or "cuda"), keeping the Variable objects."""
        for variable in self.weights:
            variable.data = _to_device(variable.data, device)
            if variable.grad is not None:
                variable.grad = variable.grad.to(device)
        return self

    # ---- building and shapes

    def build(self, input_shape):
        """Create the weights for inputs of this shape (batch axis may be None)."""

    def compute_output_shape(self, input_shape):
        """The output shape for an input shape. This default runs `call` on zeros (batch 1);
        layers override it with shape arithmetic."""
        def zeros(shape):
            return Tensor(np.zeros((1 if shape[0] is None else shape[0],) + tuple(shape[1:]), dtype=self.dtype))

        with no_grad():
            outputs = self.call(map_structure_shapes(zeros, input_shape))
        batch = _batch_of(input_shape)
        return map_structure(lambda t: (batch,) + tuple(t.shape[1:]), outputs)

    def _check_input_shape(self, input_shape):
        """Rank and built-for-size checks; messages name the layer and the shapes."""
        if isinstance(input_shape, list):
            return
        rank = len(input_shape)
        expected = self.input_ndim
        if expected is not None and rank != expected or self.min_ndim is not None and rank < self.min_ndim:
            wanted = f"a {expected}-D input" if expected is not None else f"an input of rank >= {self.min_ndim}"
            description = f" {self.input_description}" if self.input_description else ""
            hint = f"; {self.input_hint}" if self.input_hint else ""
            raise ValueError(
                f"{self._describe()} expects {wanted}{description}, got shape {tuple(input_shape)} "
                f"(rank {rank}){hint}"
            )
        if self._last_axis is not None and input_shape[-1] is not None and input_shape[-1] != self._last_axis:
            raise ValueError(
                f"{self._describe()} was built for inputs with last axis {self._last_axis}, "
                f"got shape {tuple(input_shape)}"
            )

    def _maybe_build(self, input_shape):
        if not self.built:
            self.build(input_shape)
            self.built = True

    @contextlib.contextmanager
    def _error_context(self, input_shape):
        """Re-raise shape and type errors with the layer's name and input shape in front."""
        try:
            yield
        except (ValueError, TypeError) as error:
            if type(error) not in (ValueError, TypeError) or getattr(error, "_names_layer", False):
                raise
            if f"'{self.name}'" in str(error):
                error._names_layer = True
                raise
            wrapped = type(error)(f"{self._describe()} called on input shape {format_shapes(input_shape)}: {error}")
            wrapped._names_layer = True
            raise wrapped from error

    # ---- calling

    def __call__(self, inputs, *args, **kwargs):
        flat = flatten(inputs)
        symbolic = [isinstance(t, KerasTensor) for t in flat]
        if any(symbolic):
            if not all(symbolic):
                raise TypeError(
                    f"{self._describe()}: cannot mix symbolic tensors (from Input) with arrays "
                    "or Tensors in one call"
                )
            return self._call_symbolic(inputs, *args, **kwargs)
        return self._call_eager(inputs, *args, **kwargs)

    def _call_symbolic(self, inputs, *args, **kwargs):
        input_shape = map_structure_shapes(lambda t: t.shape, inputs)
        with self._error_context(input_shape):
            self._check_input_shape(input_shape)
            self._maybe_build(input_shape)
            output_shape = self.compute_output_shape(input_shape)
        shapes = output_shape if isinstance(output_shape, list) else [output_shape]
        dtypes = self._output_dtypes(len(shapes))
        outputs = [KerasTensor(shape, dtype) for shape, dtype in zip(shapes, dtypes)]
        # `training` given while building a functional model fixes this call's mode, as in
        # Keras (the books' `x = base(inputs, training=False)` keeps a frozen base's batch
        # norm in inference mode while the model trains); None follows the model's mode.
        training = kwargs.pop("training", None)
        if training is not None:
            kwargs["training"] = bool(training)
        node = Node(self, inputs, outputs, dict(kwargs, args=args) if args else kwargs)
        self._inbound_nodes.append(node)
        return outputs if isinstance(output_shape, list) else outputs[0]

    def _output_dtypes(self, count):
        return [self.dtype] * count

    def _call_eager(self, inputs, *args, training=None, **kwargs):
        inputs = map_structure_shapes(self._convert_input, inputs)
        input_shape = map_structure_shapes(lambda t: t.shape, inputs)
        with self._error_context(input_shape):
            self._check_input_shape(input_shape)
            if not self.built:
                self._maybe_build(input_shape)
                self._follow_input_device(inputs)
            self._check_device(inputs)
            if training is None:  # a layer called inside another's call: the caller's mode, as in Keras
                training = _enclosing_training.get()
            if self._call_takes_training:
                kwargs["training"] = bool(training)
            token = _enclosing_training.set(training)
            try:
                return self.call(inputs, *args, **kwargs)
            finally:
                _enclosing_training.reset(token)

    def _follow_input_device(self, inputs):
        """Weights built by a first call on GPU data are moved to the GPU."""
        device = flatten(inputs)[0].device
        if device != "cpu" and self._variables:
            self.to(device)

    def _check_device(self, inputs):
        if self._variables:
            weights_device = self._variables[0].device
            for tensor in flatten(inputs):
                if tensor.device != weights_device:
                    raise ValueError(
                        f"{self._describe()} has its weights on '{weights_device}' but got an input on "
                        f"'{tensor.device}'; move the model (model.to('{tensor.device}')) or the data (.to())"
                    )

    def _convert_input(self, value):
        """Arrays become Tensors; floating inputs are cast to the layer's dtype (as Keras does)."""
        tensor = value if isinstance(value, Tensor) else Tensor(value)
        if tensor.is_floating and tensor.dtype != np.dtype(self.dtype):
            tensor = math_ops.cast(tensor, self.dtype)
        return tensor

    def call(self, inputs):
        raise NotImplementedError(f"{type(self).__name__} must define call(inputs)")

    # ---- the symbolic graph seen from a layer

    def _single_node(self, what):
        if not self._inbound_nodes:
            raise AttributeError(
                f"{self._describe()} has never been called on a symbolic input, so it has no {what}"
            )
        if len(self._inbound_nodes) > 1:
            raise AttributeError(
                f"{self._describe()} has been called {len(self._inbound_nodes)} times (a shared "
                f"layer), so its {what} is ambiguous: use get_{what}_at(node_index)"
            )
        return self._inbound_nodes[0]

    @property
    def output(self):
        return self.get_output_at(None)

    @property
    def input(self):
        return self.get_input_at(None)

    def get_output_at(self, node_index):
        node = self._single_node("output") if node_index is None else self._inbound_nodes[node_index]
        return node.outputs[0] if len(node.outputs) == 1 else list(node.outputs)

    def get_input_at(self, node_index):
        node = self._single_node("input") if node_index is None else self._inbound_nodes[node_index]
        return node.call_inputs

    @property
    def output_shape(self):
        return map_structure(lambda t: t.shape, self.output)

    @property
    def input_shape(self):
        return map_structure(lambda t: t.shape, self.input)

    # ---- config

    def get_config(self):
        """The constructor arguments, so that `type(layer).from_config(config)` rebuilds it."""
        config = {"name": self.name, "trainable": self.trainable, "dtype": self.dtype}
        if self._batch_input_shape is not None:
            config["batch_input_shape"] = self._batch_input_shape
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def map_structure_shapes(fn, structure):
    """map_structure where a shape tuple counts as a leaf, not as a list of numbers."""
    if isinstance(structure, list) or isinstance(structure, tuple) and not _is_shape(structure):
        return [map_structure_shapes(fn, item) for item in structure]
    return fn(structure)


def _is_shape(value):
    return isinstance(value, tuple) and all(n is None or isinstance(n, (int, np.integer)) for n in value)


def _batch_of(input_shape):
    return input_shape[0][0] if isinstance(input_shape, list) else input_shape[0]


def _unique(items):
    seen, result = set(), []
    for item in items:
        if id(item) not in seen:
            seen.add(id(item))
            result.append(item)
    return result
