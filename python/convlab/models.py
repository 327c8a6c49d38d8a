"""Model (the functional API), Sequential, and summary().

A functional model is the part of the layer-call graph between its input and output
symbolic tensors:

    inputs = Input(shape=(28, 28, 1))
    x = layers.Conv2D(32, 3, activation="relu")(inputs)   # each call adds a Node
    ...
    outputs = layers.Dense(10, activation="softmax")(x)
    model = Model(inputs, outputs)

`Model.__init__` walks back from the outputs to the inputs, orders the nodes so that every
node comes after the nodes it reads from, and keeps that list. Calling the model on data
runs the nodes in that order. Any symbolic tensor of the graph can be an output of a new
model (`Model(model.input, [layer.output for layer in model.layers[1:5]])`): the layers,
and so the weights, are shared.

Training (compile/fit) builds on this: `model(x, training=True)` passes the flag to every
layer that takes one (BatchNormalization, Dropout).
"""

from . import layers as layers_module
from .autograd import Tensor
from .layers.base import KerasTensor, Layer, flatten, format_shapes, map_structure, map_structure_shapes
from .layers.input_layer import Input, InputLayer
from .training import TrainingMixin

__all__ = ["Model", "Sequential", "load_model", "serialize_model", "deserialize_model"]


class Model(TrainingMixin, Layer):
    """A graph of layers from `inputs` to `outputs`, usable itself as a layer.

    Training (compile, fit, evaluate, predict) comes from convlab.training; saving and
    loading (save, save_weights, load_weights, load_model) from convlab.saving.
    """

    def __init__(self, inputs=None, outputs=None, name=None, trainable=True, **kwargs):
        super().__init__(name=name, trainable=trainable, **kwargs)
        self._graph = inputs is not None or outputs is not None
        self._nodes, self._layers = [], []
        if self._graph:
            if inputs is None or outputs is None:
                raise ValueError(f"Model '{self.name}': give both inputs and outputs (or neither, to subclass Model)")
            self._init_graph(inputs, outputs)

    # ---- building the graph

    def _init_graph(self, inputs, outputs):
        where = f"Model '{self.name}'"
        for role, structure in (("inputs", inputs), ("outputs", outputs)):
            if isinstance(structure, dict):
                raise TypeError(f"{where}: {role} must be a symbolic tensor or a list of them, not a dict")
            for index, tensor in enumerate(flatten(structure)):
                if not isinstance(tensor, KerasTensor):
                    raise TypeError(
                        f"{where}: {role}[{index}] must be a symbolic tensor (from Input() or a layer "
                        f"called on one), got {type(tensor).__name__}"
                    )
        self._graph = True
        self._input_structure, self._output_structure = inputs, outputs
        self.inputs, self.outputs = flatten(inputs), flatten(outputs)
        self._nodes = _nodes_between(self.inputs, self.outputs, where)

        layers, seen = [], set()
        input_layers = [t.node.layer for t in self.inputs if isinstance(t.node.layer, InputLayer)]
        for layer in input_layers + [node.layer for node in self._nodes]:
            if id(layer) not in seen:
                seen.add(id(layer))
                layers.append(layer)
        by_name = {}
        for layer in layers:
            if layer.name in by_name:
                raise ValueError(
                    f"{where}: layer names must be unique, but '{layer.name}' names both a "
                    f"{type(by_name[layer.name]).__name__} and a {type(layer).__name__}; "
                    "pass a different name= to one of them"
                )
            by_name[layer.name] = layer
        self._layers = layers
        self._sublayers = [layer for layer in layers if not isinstance(layer, InputLayer)]
        for layer in self._sublayers:
            if not self.trainable:
                layer.trainable = False
        self.built = True

    @property
    def layers(self):
        return list(self._layers if self._graph else self._sublayers)

    def get_layer(self, name=None, index=None):
        """The layer with this name (or at this index of `layers`)."""
        if index is not None:
            if not -len(self.layers) <= index < len(self.layers):
                raise ValueError(f"Model '{self.name}': index {index} is out of range for {len(self.layers)} layers")
            return self.layers[index]
        for layer in self.layers:
            if layer.name == name:
                return layer
        names = ", ".join(layer.name for layer in self.layers)
        raise ValueError(f"Model '{self.name}' has no layer named {name!r}; its layers: {names}")

    @property
    def input(self):
        self._require_graph("input")
        return self._input_structure

    @property
    def output(self):
        self._require_graph("output")
        return self._output_structure

    @property
    def input_shape(self):
        return map_structure(lambda t: t.shape, self.input)

    @property
    def output_shape(self):
        return map_structure(lambda t: t.shape, self.output)

    def _require_graph(self, what):
        if not self._graph:
            raise AttributeError(
                f"Model '{self.name}' has no {what}: it is not built from Input() tensors "
                "(build it by calling it on data, or start a Sequential with an Input)"
            )

    # ---- running the graph

    def _convert_input(self, value):
        return value if isinstance(value, Tensor) else Tensor(value)  # cast per input in call()

    def _check_input_shape(self, input_shape):
        if not self._graph:
            return
        given = input_shape if isinstance(input_shape, list) else [input_shape]
        if len(given) != len(self.inputs):
            raise ValueError(
                f"Model '{self.name}' expects {len(self.inputs)} input(s), got {len(given)} "
                f"with shapes {format_shapes(given)}"
            )
        for index, (shape, tensor) in enumerate(zip(given, self.inputs)):
            if len(shape) != len(tensor.shape) or any(
                a is not None and b is not None and a != b for a, b in zip(shape, tensor.shape)
            ):
                raise ValueError(
                    f"Model '{self.name}': input {index} ('{tensor.name}') expects shape {tensor.shape}, "
                    f"got {tuple(shape)}"
                )

    def call(self, inputs, training=False):
        if not self._graph:
            raise NotImplementedError(f"Model '{self.name}': a subclassed Model must define call(inputs)")
        given = inputs if isinstance(inputs, (list, tuple)) else [inputs]
        values = {}
        for tensor, value in zip(self.inputs, given):
            values[id(tensor)] = value.astype(tensor.dtype)  # uint8 images into a float32 model, say
        # Forget each intermediate value after its last reader, so inference keeps few alive.
        remaining = {}
        for node in self._nodes:
            for tensor in node.input_tensors:
                remaining[id(tensor)] = remaining.get(id(tensor), 0) + 1
        keep = {id(t) for t in self.outputs}
        for node in self._nodes:
            arguments = map_structure_shapes(lambda t: values[id(t)], node.call_inputs)
            kwargs = {k: v for k, v in node.call_kwargs.items() if k not in ("args", "training")}
            node_training = node.call_kwargs.get("training", training)  # fixed when the model was built
            result = node.layer(arguments, *node.call_kwargs.get("args", ()), training=node_training, **kwargs)
            for tensor, value in zip(node.outputs, result if isinstance(result, list) else [result]):
                values[id(tensor)] = value
            for tensor in node.input_tensors:
                remaining[id(tensor)] -= 1
                if remaining[id(tensor)] == 0 and id(tensor) not in keep:
                    del values[id(tensor)]
        results = [values[id(t)] for t in self.outputs]
        return results if isinstance(self._output_structure, (list, tuple)) else results[0]

    def compute_output_shape(self, input_shape):
        if not self._graph:
            return super().compute_output_shape(input_shape)
        given = input_shape if isinstance(input_shape, list) else [input_shape]
        shapes = {id(t): tuple(s) for t, s in zip(self.inputs, given)}
        for node in self._nodes:
            node_input = map_structure_shapes(lambda t: shapes[id(t)], node.call_inputs)
            result = node.layer.compute_output_shape(node_input)
            for tensor, shape in zip(node.outputs, result if isinstance(result, list) else [result]):
                shapes[id(tensor)] = tuple(shape)
        results = [shapes[id(t)] for t in self.outputs]
        return results if isinstance(self._output_structure, (list, tuple)) else results[0]

    def _output_dtypes(self, count):
        return [t.dtype for t in self.outputs] if self._graph else super()._output_dtypes(count)

    # ---- summary

    def summary(self, line_length=None, print_fn=None):
        """Print a Keras-like table of the layers, their output shapes and parameter counts."""
        if not self.built:
            raise ValueError(
                f"Model '{self.name}' is not built yet: call it on data, or give it an Input "
                "(Sequential: start it with Input(shape=...) or pass input_shape= to its first layer)"
            )
        print_fn = print_fn or print
        for line in self._summary_lines(line_length):
            print_fn(line)

    def _summary_lines(self, line_length):
        sequential_like = self._is_sequential_like()
        header = ["Layer (type)", "Output Shape", "Param #"] + ([] if sequential_like else ["Connected to"])
        rows = [self._summary_row(layer, sequential_like) for layer in self.layers]
        widths = [max(len(header[i]), *(len(r[i]) for r in rows)) + 3 for i in range(len(header))]
        widths[0] = max(widths[0], 29)
        widths[1] = max(widths[1], 26)
        widths[2] = max(widths[2], 10)
        width = max(line_length or 0, sum(widths) + 1)

        def format_row(cells):
            return (" " + "".join(cell.ljust(w) for cell, w in zip(cells, widths))).rstrip()

        trainable = _count(self.trainable_weights)
        non_trainable = _count(self.non_trainable_weights)
        lines = [f'Model: "{self.name}"', "_" * width, format_row(header), "=" * width]
        for index, row in enumerate(rows):
            lines.append(format_row(row))
            lines.append("=" * width if index == len(rows) - 1 else "_" * width)
        if not rows:
            lines.append("=" * width)
        lines += [
            f"Total params: {trainable + non_trainable:,}",
            f"Trainable params: {trainable:,}",
            f"Non-trainable params: {non_trainable:,}",
            "_" * width,
        ]
        return lines

    def _summary_row(self, layer, sequential_like):
        nodes = [node for node in self._nodes if node.layer is layer]
        if isinstance(layer, InputLayer):
            nodes = layer._inbound_nodes[:1]
        if len(nodes) == 1:
            shapes = [t.shape for t in nodes[0].outputs]
            output_shape = str(shapes[0]) if len(shapes) == 1 else str(shapes)
        elif nodes:
            output_shape = "multiple"
        else:
            output_shape = "?"
        params = f"{layer.count_params():,}" if layer.built else "0 (unbuilt)"
        row = [f"{layer.name} ({type(layer).__name__})", output_shape, params]
        if not sequential_like:
            inbound = [
                f"{t.node.layer.name}[{t.node.node_index}][{t.index}]" for node in nodes for t in node.input_tensors
            ]
            row.append(", ".join(inbound))
        return row

    def _is_sequential_like(self):
        if not self._graph:
            return True
        readers = {}
        for node in self._nodes:
            if len(node.input_tensors) > 1:
                return False
            for tensor in node.input_tensors:
                readers[id(tensor)] = readers.get(id(tensor), 0) + 1
        return len(self.inputs) == 1 and len(self.outputs) == 1 and all(n == 1 for n in readers.values())

    # ---- saving

    def save(self, filepath, include_optimizer=True):
        """Write the model to `filepath` (a zip of JSON and .npy; atomic): architecture, weights,
        and with include_optimizer the compile settings and optimizer state."""
        _saving().save_model(self, filepath, include_optimizer=include_optimizer)

    def save_weights(self, filepath):
        _saving().save_weights(self, filepath)

    def load_weights(self, filepath):
        _saving().load_weights(self, filepath)

    # ---- config

    def get_config(self):
        """The graph as data: each layer's class and config, and what each of its calls read."""
        if not self._graph:
            raise NotImplementedError(f"Model '{self.name}': a subclassed model has no config; override get_config")

        def node_key(node):
            same_layer = [n for n in self._model_nodes() if n.layer is node.layer]
            return same_layer.index(node)

        def ref(tensor):
            return [tensor.node.layer.name, node_key(tensor.node), tensor.index]

        layer_configs = []
        for layer in self.layers:
            calls = [n for n in self._nodes if n.layer is layer]
            layer_configs.append({
                "class_name": type(layer).__name__,
                "config": layer.get_config(),
                "inbound_nodes": [
                    {"args": map_structure(ref, n.call_inputs),
                     "kwargs": {k: v for k, v in n.call_kwargs.items() if k != "args"}}
                    for n in calls
                ],
            })
        return {
            "name": self.name,
            "trainable": self.trainable,
            "layers": layer_configs,
            "input_layers": map_structure(ref, self._input_structure),
            "output_layers": map_structure(ref, self._output_structure),
        }

    def _model_nodes(self):
        input_nodes = [t.node for t in self.inputs]
        return input_nodes + [n for n in self._nodes if n not in input_nodes]

    @classmethod
    def from_config(cls, config, custom_objects=None):
        outputs_of = {}  # (layer name, call index) -> the outputs of that call

        def tensor(ref):
            name, call, index = ref
            return outputs_of[(name, call)][index]

        def resolve(structure):
            if _is_ref(structure):
                return tensor(structure)
            return [resolve(item) for item in structure]

        # Calls are replayed in graph order; a shared layer's later call may have to wait for
        # layers listed after it, so each round runs the first waiting call whose inputs exist.
        pending = []
        for entry in config["layers"]:
            layer = deserialize_layer(entry, custom_objects)
            if isinstance(layer, InputLayer):
                outputs_of[(layer.name, 0)] = [layer.output]
            pending += [(layer, index, call) for index, call in enumerate(entry["inbound_nodes"])]
        calls_done = {}
        while pending:
            for position, (layer, index, call) in enumerate(pending):
                refs = _refs(call["args"])
                if calls_done.get(layer.name, 0) == index and all((r[0], r[1]) in outputs_of for r in refs):
                    result = layer(resolve(call["args"]), **call.get("kwargs", {}))
                    outputs_of[(layer.name, index)] = result if isinstance(result, list) else [result]
                    calls_done[layer.name] = index + 1
                    del pending[position]
                    break
            else:
                raise ValueError(f"Model.from_config: the layer calls of model {config['name']!r} do not form a graph")
        return cls(resolve(config["input_layers"]), resolve(config["output_layers"]), name=config["name"],
                   trainable=config.get("trainable", True))


class Sequential(Model):
    """A plain stack of layers, each reading the previous one's output.

    The input shape comes from an `Input(...)` as first element, from `input_shape=` on the
    first layer, or from the first call on data.
    """

    def __init__(self, layers=None, name=None, trainable=True):
        super().__init__(name=name, trainable=trainable)
        self._stack = []
        self._input_tensor = None
        self._last_output = None
        for layer in layers or []:
            self.add(layer)

    @property
    def layers(self):
        return list(self._stack)

    def add(self, layer):
        if isinstance(layer, KerasTensor) and isinstance(layer.node.layer, InputLayer):
            layer = layer.node.layer
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential '{self.name}'.add needs a layer, got {type(layer).__name__}")
        if isinstance(layer, InputLayer):
            if self._stack or self._input_tensor is not None:
                raise ValueError(f"Sequential '{self.name}': an Input can only come first")
            self._input_tensor = self._last_output = layer.output
            return
        self._stack.append(layer)
        self._sublayers = list(self._stack)
        if self._input_tensor is None and len(self._stack) == 1 and layer._batch_input_shape is not None:
            self._input_tensor = self._last_output = Input(batch_shape=layer._batch_input_shape, dtype=layer.dtype)
        if self._input_tensor is not None:
            self._last_output = layer(self._last_output)
            self._init_graph(self._input_tensor, self._last_output)

    def build(self, input_shape=None):
        """Build the stack for inputs of this shape (the batch axis is ignored)."""
        if self._input_tensor is not None or input_shape is None:
            return
        if isinstance(input_shape, list):
            raise ValueError(f"Sequential '{self.name}' takes one input, got shapes {format_shapes(input_shape)}")
        self._input_tensor = self._last_output = Input(batch_shape=(None,) + tuple(input_shape[1:]), dtype=self.dtype)
        for layer in self._stack:
            self._last_output = layer(self._last_output)
        self._init_graph(self._input_tensor, self._last_output)

    def _maybe_build(self, input_shape):
        if not self._graph:
            self.build(input_shape)

    def call(self, inputs, training=False):
        if not self._graph:
            raise ValueError(f"Sequential '{self.name}' has no layers to call")
        return super().call(inputs, training=training)

    @property
    def built(self):
        return self._graph if hasattr(self, "_graph") else False

    @built.setter
    def built(self, value):
        pass  # derived from whether the graph exists

    def get_config(self):
        config = {"name": self.name, "trainable": self.trainable,
                  "layers": [{"class_name": type(layer).__name__, "config": layer.get_config()} for layer in self._stack]}
        if self._input_tensor is not None:
            config["input_shape"] = self._input_tensor.shape
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        model = cls(name=config["name"], trainable=config.get("trainable", True))
        if "input_shape" in config:
            model.add(Input(batch_shape=tuple(config["input_shape"])))
        for entry in config["layers"]:
            model.add(deserialize_layer(entry, custom_objects))
        return model


def load_model(filepath, custom_objects=None, compile=True):
    """A model saved with model.save(): see convlab.saving (never unpickles, never runs code)."""
    return _saving().load_model(filepath, custom_objects=custom_objects, compile=compile)


def _saving():
    """convlab.saving, imported when a model is first saved or loaded.

    The dependency runs one way: saving builds on this module (it writes serialize_model's
    config and rebuilds models with deserialize_model), so this module never imports saving
    at import time. Model.save and load_model only forward to it.
    """
    from . import saving

    return saving


def serialize_model(model):
    return {"class_name": type(model).__name__, "config": model.get_config()}


def deserialize_model(entry, custom_objects=None):
    if not isinstance(entry, dict) or "class_name" not in entry or "config" not in entry:
        raise ValueError("a model config must be a dict with 'class_name' and 'config'")
    model = deserialize_layer(entry, custom_objects)
    if not isinstance(model, Model):
        raise ValueError(f"the saved config describes a {entry['class_name']}, not a model")
    return model


def deserialize_layer(entry, custom_objects=None):
    """A layer from {"class_name": ..., "config": ...}, by convlab's layer classes or custom_objects."""
    registry = {name: getattr(layers_module, name) for name in dir(layers_module)
                if isinstance(getattr(layers_module, name), type) and issubclass(getattr(layers_module, name), Layer)}
    registry.update(Model=Model, Sequential=Sequential)
    registry.update(custom_objects or {})
    class_name = entry["class_name"]
    if class_name not in registry:
        raise ValueError(f"unknown layer class {class_name!r}: pass it in custom_objects={{'{class_name}': cls}}")
    layer_class = registry[class_name]
    if issubclass(layer_class, Model):
        return layer_class.from_config(entry["config"], custom_objects)
    return layer_class.from_config(entry["config"])


def _is_ref(value):
    """A config's reference to a tensor: [layer name, call index, tensor index]."""
    return isinstance(value, list) and len(value) == 3 and isinstance(value[0], str)


def _refs(structure):
    """The tensor references in a config's call arguments."""
    if _is_ref(structure):
        return [structure]
    return [ref for item in structure for ref in _refs(item)]


def _count(weights):
    return int(sum(w.size for w in weights))


def _nodes_between(inputs, outputs, where):
    """The nodes that compute `outputs` from `inputs`, each after the nodes it reads from.

    An iterative depth-first walk back from the outputs (deep models would overflow
    Python's recursion), stopping at the inputs. Reaching an Input that is not among the
    model's inputs means an output cannot be computed from them: that is an error, and so
    is an input that no output depends on.
    """
    input_ids = {id(t) for t in inputs}
    order, done, used_inputs = [], set(), set()
    for index, output in enumerate(outputs):
        stack = [(output, False)]
        while stack:
            tensor, expanded = stack.pop()
            if id(tensor) in input_ids:
                used_inputs.add(id(tensor))
                continue
            node = tensor.node
            if id(node) in done and not expanded:
                continue
            if not node.input_tensors:  # an Input that the model was not given
                given = ", ".join(f"'{t.name}' {t.shape}" for t in inputs)
                raise ValueError(
                    f"{where}: output {index} ('{output.name}', shape {output.shape}) cannot be computed "
                    f"from the model's inputs [{given}]: it depends on input '{tensor.name}' "
                    f"(shape {tensor.shape}) of layer '{node.layer.name}', which is not among them "
                    "(graph disconnected)"
                )
            if expanded:
                if id(node) not in done:
                    done.add(id(node))
                    order.append(node)
                continue
            stack.append((tensor, True))
            for parent in reversed(node.input_tensors):
                if id(parent) in input_ids or id(parent.node) not in done:
                    stack.append((parent, False))
    for index, tensor in enumerate(inputs):
        if id(tensor) not in used_inputs:
            raise ValueError(
                f"{where}: no output depends on input {index} ('{tensor.name}', shape {tensor.shape}); "
                "outputs must be computed from the model's inputs"
            )
    return order
