"""Foreign weights into convlab models: Keras' HDF5 and .keras files, PyTorch state dicts.

Nothing in a file is ever executed: HDF5 is read with h5py (data only; links to other files,
external storage and virtual datasets are refused), a .keras archive is a zip from which
only config.json (JSON) and model.weights.h5 are read, and a PyTorch .pth file goes through
convlab.torch_checkpoint, a reader that rebuilds tensors and nothing else. Every array is
read and checked (count, shape, floating dtype) before the first weight is written, so a
load that fails leaves the model as it was; its error names the layer, the expected and the
found shape.

Keras files come in three layouts:

  legacy HDF5    Keras' pretrained *_weights_tf_dim_ordering_tf_kernels*.h5 files, Keras 2's
                 save_weights("x.h5"), and the model_weights group of a full-model .h5.
                 Root attribute layer_names; each layer's group has an attribute weight_names
                 naming its datasets (kernel, bias; gamma, beta, moving_mean, moving_variance).
  .weights.h5    Keras 3's save_weights: layers/<key>/vars/0..n. The key is not the layer's
                 name but its snake-cased class made unique in the model's layer order
                 (conv2d, conv2d_1, ..., batch_normalization, ...), so the file fits a model
                 whose layers of each class come in the same order.
  .keras         Keras 3's save: a zip of config.json (every layer's name and class, in that
                 order, which gives each key its layer name) and model.weights.h5.

Layers are matched by name where the file has names (legacy, .keras): a model layer whose
name is its own (not an automatic conv2d_3) takes the file's layer of that name. The layers
left over on both sides, automatic names included, are paired in the model's order, which
is Keras' own rule for files (load_weights without by_name). Keras lists a functional
model's layers by depth from the output (keras.src.ops.function.map_graph), not in the
order they were created; keras_layer_order reproduces that order for convlab's graphs.
Weight layouts are Keras' in convlab (Conv2D (kh, kw, in, out), Dense (in, out), ...), so
Keras arrays load unchanged.

PyTorch state dicts map by a {convlab layer: torch module path} mapping (the layer's own
name by default, TORCHVISION_VGG16 for vgg16) and change layout on the way
(torch_checkpoint.to_keras_layout): conv weights (out, in, kh, kw) -> (kh, kw, in, out),
depthwise (in*m, 1, kh, kw) -> (kh, kw, in, m), linear (out, in) -> (in, out); a linear
layer after Flatten also reorders its inputs
from torch's (c, h, w) flattening to convlab's (h, w, c). BatchNorm: weight, bias,
running_mean, running_var (num_batches_tracked is not a weight). The architecture must
already be torch's: torchvision's ResNet pads its 3x3 convs by 1 on every side where
TensorFlow's 'same' pads 0 before and 1 after at stride 2, which is why
applications.torchvision_resnet50 is built with explicit ZeroPadding2D layers.
"""

import json
import os
import re
import shutil
import tempfile
import zipfile

import numpy as np

from ..torch_checkpoint import to_keras_layout

__all__ = ["load_keras_weights", "keras_file_kind", "keras_layer_order", "load_torch_state_dict",
           "read_torch_state_dict", "TORCHVISION_VGG16"]

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_MAX_CONFIG_BYTES = 64 * 2**20

TORCHVISION_VGG16 = {
    "block1_conv1": "features.0", "block1_conv2": "features.2",
    "block2_conv1": "features.5", "block2_conv2": "features.7",
    "block3_conv1": "features.10", "block3_conv2": "features.12", "block3_conv3": "features.14",
    "block4_conv1": "features.17", "block4_conv2": "features.19", "block4_conv3": "features.21",
    "block5_conv1": "features.24", "block5_conv2": "features.26", "block5_conv3": "features.28",
    "fc1": "classifier.0", "fc2": "classifier.3", "predictions": "classifier.6",
}
_TORCH_MAPPINGS = {"torchvision_vgg16": TORCHVISION_VGG16}


# --------------------------------------------------------------------------- the model's side


def keras_layer_order(model):
    """The model's layers in the order Keras lists a functional model's layers: by depth
    (the longest path to an output), deepest first, ties in the order a depth-first walk
    from the outputs first meets them. A port of keras.src.ops.function.map_graph."""
    if not getattr(model, "_graph", False):
        return model.layers
    input_ids = {id(t) for t in model.inputs}
    finished, post_order, first_seen, layers_by_id = set(), [], {}, {}

    def enter(tensor):
        node = tensor.node
        if id(node) in finished:
            return None
        if id(tensor) in input_ids and node.input_tensors:  # a model input made by another layer
            finished.add(id(node))
            return None
        first_seen.setdefault(id(node.layer), len(first_seen))
        layers_by_id[id(node.layer)] = node.layer
        return node

    for output in model.outputs:  # an iterative depth-first walk: deep nets exceed Python's recursion
        root = enter(output)
        stack = [] if root is None else [(root, iter(root.input_tensors))]
        while stack:
            node, parents = stack[-1]
            tensor = next(parents, None)
            if tensor is None:
                stack.pop()
                finished.add(id(node))
                post_order.append(node)
            elif (child := enter(tensor)) is not None:
                stack.append((child, iter(child.input_tensors)))

    in_graph = {id(node) for node in post_order}
    node_depth, layer_depth = {}, {}
    for node in reversed(post_order):
        depth = max(node_depth.setdefault(id(node), 0), layer_depth.get(id(node.layer), 0))
        layer_depth[id(node.layer)] = node_depth[id(node)] = depth
        for tensor in node.input_tensors:
            parent = tensor.node
            if id(parent) in in_graph:
                node_depth[id(parent)] = max(depth + 1, node_depth.get(id(parent), 0))
    order = sorted(layer_depth, key=lambda key: (-layer_depth[key], first_seen[key]))
    return [layers_by_id[key] for key in order]


def _keras_snake_case(name):
    """keras.src.utils.naming.to_snake_case: Conv2D -> conv2d, ReLU -> re_lu."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _keras3_keys(class_names):
    """The keys Keras 3 files its layers under: snake-cased class, then _1, _2, ... per class."""
    counts, keys = {}, []
    for class_name in class_names:
        base = _keras_snake_case(class_name)
        keys.append(base if base not in counts else f"{base}_{counts[base] + 1}")
        counts[base] = counts.get(base, -1) + 1
    return keys


def _layer_weights(layer, path):
    """A layer's weights in Keras' order (trainable first). Layers made of layers (a nested
    model) are refused: Keras orders their weights differently."""
    if getattr(layer, "_sublayers", None) and layer.weights:
        raise ValueError(
            f"{path!r}: layer '{layer.name}' ({type(layer).__name__}) is made of other layers (a nested model or "
            "block); loading Keras weights into nested layers is not supported: load them into that model itself"
        )
    weights = layer.weights
    return [w for w in weights if w.trainable] + [w for w in weights if not w.trainable]


def _describe_weights(variables):
    return ", ".join(f"{v.name.split('/')[-1]} {tuple(v.shape)}" for v in variables) or "none"


# --------------------------------------------------------------------------- reading Keras files


def _h5py(path):
    try:
        import h5py
    except ImportError:
        raise ImportError(
            f"reading Keras HDF5 weights ({os.fspath(path)!r}) needs h5py, which is not installed: "
            "pip install 'convlab[keras-weights]' (or pip install h5py)"
        ) from None
    return h5py


def keras_file_kind(path):
    """'hdf5' (legacy .h5 or Keras 3 .weights.h5), 'keras' (a Keras 3 .keras zip) or None (not a
    Keras file: convlab's own archive, say). Told apart by content, not by name: convlab's own
    saved models are zips often named .keras too."""
    try:
        with open(path, "rb") as file:
            head = file.read(8)
    except (OSError, TypeError):
        return None
    if head == _HDF5_SIGNATURE:
        return "hdf5"
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
        if "model.weights.h5" in names or "model.weights.json" in names:
            return "keras"
    return None


class _FileLayer:
    """One layer's weights in a Keras file: its name (None where the file has none), the key
    it is stored under, and its datasets (read later, after every shape is checked)."""

    def __init__(self, name, key, weight_names, datasets):
        self.name, self.key, self.weight_names, self.datasets = name, key, weight_names, datasets

    def describe(self):
        label = f"'{self.name}'" if self.name is not None else f"'{self.key}'"
        shapes = ", ".join(f"{n} {tuple(d.shape)}" for n, d in zip(self.weight_names, self.datasets)) or "none"
        return f"{label} ({shapes})"


def _text(value):
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _child(h5py, group, name, path):
    """group[name], refusing links to other files: reading one must not open another."""
    link = group.get(name, getlink=True)
    if link is None:
        raise ValueError(f"{path!r}: no '{name}' in group '{group.name}' (the file is not a Keras weights file "
                         "or it is damaged)")
    if isinstance(link, h5py.ExternalLink):
        raise ValueError(f"{path!r}: '{group.name}/{name}' links to another file; refusing to follow it")
    return group[name]


def _dataset(h5py, group, name, path):
    node = group
    for part in name.split("/"):
        node = _child(h5py, node, part, path)
    if not isinstance(node, h5py.Dataset):
        raise ValueError(f"{path!r}: '{node.name}' is not a dataset")
    if node.is_virtual or node.external:
        raise ValueError(f"{path!r}: dataset '{node.name}' keeps its data outside the file; refusing to read it")
    if node.dtype.kind != "f":
        raise ValueError(f"{path!r}: dataset '{node.name}' has dtype {node.dtype}, not a floating-point weight")
    return node


def _read_legacy(h5py, root, path):
    names = [_text(n) for n in root.attrs["layer_names"]]
    result = []
    for name in names:
        group = _child(h5py, root, name, path)
        weight_names = [_text(n) for n in group.attrs.get("weight_names", [])]
        datasets = [_dataset(h5py, group, weight_name, path) for weight_name in weight_names]
        result.append(_FileLayer(name, name, [n.split("/")[-1] for n in weight_names], datasets))
    return result


def _read_keras3(h5py, root, path, names=None):
    """layers/<key>/vars/0..n; names: {key: layer name} from a .keras config (else no names)."""
    layers_group = _child(h5py, root, "layers", path)
    keys = list(layers_group)  # HDF5 lists them alphabetically; a config gives the model's order
    if names is not None:
        keys = [key for key in names if key in layers_group] + [key for key in keys if key not in names]
    result = []
    for key in keys:
        group = _child(h5py, layers_group, key, path)
        if group.get("layers", getlink=True) is not None and len(_child(h5py, group, "layers", path)):
            raise ValueError(f"{path!r}: layer '{key}' is a nested model; loading nested models is not supported")
        variables = _child(h5py, group, "vars", path) if group.get("vars", getlink=True) is not None else {}
        indices = sorted(variables, key=int) if variables else []
        datasets = [_dataset(h5py, variables, index, path) for index in indices]
        name = None if names is None else names.get(key)
        result.append(_FileLayer(name, key, [f"vars/{i}" for i in indices], datasets))
    return result


def _keras_config_names(archive, path):
    """{key in model.weights.h5: layer name}, in the model's layer order, from a .keras
    archive's config.json."""
    info = archive.getinfo("config.json") if "config.json" in archive.namelist() else None
    if info is None or info.file_size > _MAX_CONFIG_BYTES:
        raise ValueError(f"{path!r}: a .keras archive needs a config.json (of at most {_MAX_CONFIG_BYTES} bytes)")
    try:
        config = json.loads(archive.read("config.json").decode("utf-8"))
        entries = config["config"]["layers"]
        class_names = [entry["class_name"] for entry in entries]
        names = [entry.get("name") or entry["config"]["name"] for entry in entries]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path!r}: config.json does not describe a Keras model's layers ({error!r})") from None
    return dict(zip(_keras3_keys(class_names), names))


class _KerasFile:
    """An open Keras weights file: its layers (names, keys, datasets), closed on exit."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self.kind = keras_file_kind(self.path)
        self._file = self._temp = None
        h5py = _h5py(self.path)
        try:
            if self.kind == "keras":
                self._open_archive(h5py)
            elif self.kind == "hdf5":
                self._file = h5py.File(self.path, "r")
                root = self._file
                if "layer_names" not in root.attrs and "model_weights" in root:
                    root = _child(h5py, root, "model_weights", self.path)  # a legacy full-model .h5
                if "layer_names" in root.attrs:
                    self.layout, self.layers = "legacy", _read_legacy(h5py, root, self.path)
                elif "layers" in root:
                    self.layout, self.layers = "keras3", _read_keras3(h5py, root, self.path)
                else:
                    raise ValueError(f"{self.path!r} is an HDF5 file but not Keras weights (no layer_names "
                                     "attribute, no layers group)")
            else:
                raise ValueError(f"{self.path!r} is not a Keras weights file (.h5, .weights.h5 or .keras)")
        except BaseException:
            self.close()
            raise

    def _open_archive(self, h5py):
        with zipfile.ZipFile(self.path) as archive:
            if "model.weights.h5" not in archive.namelist():
                raise ValueError(f"{self.path!r}: sharded .keras weights (model.weights.json) are not supported")
            names = _keras_config_names(archive, self.path)
            # h5py reads a real file best: copy the member out (never extracting by its own name).
            self._temp = tempfile.NamedTemporaryFile(suffix=".weights.h5", delete=False)
            with archive.open("model.weights.h5") as member, self._temp as target:
                shutil.copyfileobj(member, target, 2**22)
        self._file = h5py.File(self._temp.name, "r")
        self.layout, self.layers = "keras", _read_keras3(h5py, self._file, self.path, names)

    def close(self):
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._temp is not None:
            os.unlink(self._temp.name)
            self._temp = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --------------------------------------------------------------------------- matching and loading


def _is_automatic_name(layer):
    """conv2d, conv2d_3, batch_normalization_1 ...: a name the layer did not choose."""
    return re.fullmatch(re.escape(_keras_snake_case(type(layer).__name__)) + r"(_\d+)?", layer.name) is not None


def _pair_layers(ordered, file_layers, keyed, path):
    """[(model layer, file layer)] for the model's layers with weights, in Keras' order: by key
    for a Keras 3 .weights.h5 (keyed), else by name, then the rest in order."""
    weighted = [layer for layer in ordered if layer.weights]
    file_weighted = [f for f in file_layers if f.datasets]
    if keyed:
        keys = dict(zip(map(id, ordered), _keras3_keys(type(layer).__name__ for layer in ordered)))
        by_key = {f.key: f for f in file_weighted}
        pairs = [(layer, by_key.pop(keys[id(layer)], None)) for layer in weighted]
        _check_leftovers([layer for layer, found in pairs if found is None], list(by_key.values()), path)
        return pairs
    by_name = {f.name: f for f in file_weighted}
    named, rest = {}, []
    for layer in weighted:
        found = None if _is_automatic_name(layer) else by_name.pop(layer.name, None)
        if found is not None:
            named[id(layer)] = found
        else:
            rest.append(layer)
    file_rest = [f for f in file_weighted if f.name in by_name]
    if len(rest) != len(file_rest):
        _check_leftovers(rest, file_rest, path)
    named.update(zip(map(id, rest), file_rest))
    return [(layer, named[id(layer)]) for layer in weighted]


def _check_leftovers(model_rest, file_rest, path):
    if not model_rest and not file_rest:
        return
    lines = [f"{path!r} does not fit the model: nothing was loaded."]
    if model_rest:
        lines.append(f"{len(model_rest)} model layer(s) with weights found no layer in the file: " + _first(
            [f"'{layer.name}' ({type(layer).__name__}: {_describe_weights(layer.weights)})" for layer in model_rest]))
    if file_rest:
        lines.append(f"{len(file_rest)} file layer(s) with weights left over: "
                     + _first([f.describe() for f in file_rest]))
    if file_rest and not model_rest:
        lines.append("(A file for the model with its top, loaded into one without? Keras' *_notop.h5 files fit "
                     "include_top=False.)")
    raise ValueError(" ".join(lines))


def _first(items, count=6):
    return "; ".join(items[:count]) + (f"; ... ({len(items) - count} more)" if len(items) > count else "")


def load_keras_weights(model, path):
    """Set `model`'s weights from a Keras file (legacy .h5, .weights.h5 or .keras), all or nothing."""
    path = os.fspath(path)
    try:
        plan, arrays = _read_for(model, path)
    except ValueError as error:
        if "nothing was loaded" in str(error):
            raise
        raise ValueError(f"{error}; nothing was loaded") from None
    for (variable, _), array in zip(plan, arrays):
        variable.assign(array)


def _read_for(model, path):
    """Every (variable, dataset) pair, checked, and the arrays read in the variables' dtypes."""
    with _KerasFile(path) as source:
        ordered = keras_layer_order(model)
        for layer in ordered:
            _layer_weights(layer, path)  # refuses nested models before anything else
        pairs = _pair_layers(ordered, source.layers, source.layout == "keras3", path)
        plan = []
        for layer, found in pairs:
            variables = _layer_weights(layer, path)
            where = f"{path!r}: layer '{layer.name}' ({type(layer).__name__})"
            source_label = f"the file's layer '{found.name or found.key}'"
            if len(variables) != len(found.datasets):
                raise ValueError(
                    f"{where} has {len(variables)} weights ({_describe_weights(variables)}), {source_label} has "
                    f"{len(found.datasets)} ({found.describe()}); nothing was loaded"
                )
            for variable, weight_name, dataset in zip(variables, found.weight_names, found.datasets):
                if tuple(dataset.shape) != tuple(variable.shape):
                    raise ValueError(
                        f"{where}: weight '{variable.name.split('/')[-1]}' expects shape {tuple(variable.shape)}, "
                        f"found {tuple(dataset.shape)} in {source_label} ('{weight_name}'); nothing was loaded"
                    )
                plan.append((variable, dataset))
        arrays = [np.asarray(dataset[()], dtype=variable.dtype) for variable, dataset in plan]
    _check_values(model, [variable for variable, _ in plan], arrays)
    return plan, arrays


def _check_values(model, variables, arrays):
    """The layers' own checks of values (a batch norm's variance must be >= 0), as set_weights runs them."""
    check = getattr(model, "check_weight_values", None)
    if check is not None:
        check({id(variable): array for variable, array in zip(variables, arrays)})


# --------------------------------------------------------------------------- PyTorch state dicts


def read_torch_state_dict(path):
    """{key: numpy array} from a PyTorch checkpoint file, through convlab.torch_checkpoint: a
    reader that rebuilds tensors and nothing else (never torch.load, never a plain unpickler)."""
    from ..torch_checkpoint import load_state_dict

    return load_state_dict(path)


def _to_numpy(key, value):
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "detach"):  # a torch tensor, without importing torch
        value = value.detach().cpu()
        if str(value.dtype) in ("torch.bfloat16", "torch.float16"):
            value = value.float()
        return value.numpy()
    if hasattr(value, "__array__") or isinstance(value, (list, tuple, float, int)):
        return np.asarray(value)
    raise TypeError(f"state dict entry '{key}' is a {type(value).__name__}, not an array or a tensor")


def _unchanged(array):
    return array


def _torch_targets(model, layer):
    """[(variable, torch parameter name, torch -> convlab function, expected torch shape)]."""
    kind = type(layer).__name__
    if kind == "Conv2D":
        kh, kw, cin, cout = layer.kernel.shape
        targets = [(layer.kernel, "weight", lambda a: to_keras_layout(a, "conv2d"), (cout, cin, kh, kw))]
    elif kind == "DepthwiseConv2D":
        kh, kw, cin, multiplier = layer.kernel.shape
        targets = [(layer.kernel, "weight", lambda a: to_keras_layout(a, "depthwise_conv2d", multiplier),
                    (cin * multiplier, 1, kh, kw))]
    elif kind == "Dense":
        features, units = layer.kernel.shape
        maps = _flattened_maps(model, layer)
        if maps is not None and maps[0] * maps[1] > 1:
            h, w, c = maps  # torch flattens (c, h, w), convlab (h, w, c)
            convert = lambda a: a.reshape(units, c, h, w).transpose(2, 3, 1, 0).reshape(features, units)  # noqa: E731
        else:
            convert = lambda a: to_keras_layout(a, "dense")  # noqa: E731
        targets = [(layer.kernel, "weight", convert, (units, features))]
    elif kind == "BatchNormalization":
        pairs = ((layer.gamma, "weight"), (layer.beta, "bias"), (layer.moving_mean, "running_mean"),
                 (layer.moving_variance, "running_var"))
        return [(variable, name, _unchanged, variable.shape) for variable, name in pairs if variable is not None]
    else:
        raise ValueError(
            f"layer '{layer.name}' ({kind}) has weights but no PyTorch counterpart convlab knows (Conv2D, "
            "DepthwiseConv2D, Dense, BatchNormalization); nothing was loaded"
        )
    if getattr(layer, "bias", None) is not None:
        targets.append((layer.bias, "bias", _unchanged, layer.bias.shape))
    return targets


def _flattened_maps(model, layer):
    """(h, w, c) when `layer` reads a Flatten of 4-D feature maps in `model`, else None."""
    for node in getattr(model, "_nodes", []):
        if node.layer is layer and len(node.input_tensors) == 1:
            source = node.input_tensors[0].node
            if type(source.layer).__name__ == "Flatten" and len(source.input_tensors) == 1:
                shape = source.input_tensors[0].shape
                if len(shape) == 4 and None not in shape[1:]:
                    return shape[1:]
    return None


def _resolve_mapping(model, weighted, mapping, keys):
    if callable(mapping):
        return {layer.name: mapping(layer.name) for layer in weighted}
    if isinstance(mapping, str):
        if mapping not in _TORCH_MAPPINGS:
            raise ValueError(f"unknown mapping {mapping!r}; known: {', '.join(_TORCH_MAPPINGS)}, a dict or a function")
        mapping = _TORCH_MAPPINGS[mapping]
    if mapping is None:
        names = {layer.name for layer in weighted}
        by_name = all(any(k.startswith(name + ".") for k in keys) for name in names)
        if not by_name and names <= set(TORCHVISION_VGG16) and any(k.startswith("features.") for k in keys):
            mapping = TORCHVISION_VGG16  # Keras-named vgg16, torchvision's keys
        else:
            return {name: name for name in names}
    return {layer.name: mapping.get(layer.name, layer.name) for layer in weighted}


def load_torch_state_dict(model, state_dict, mapping=None, strict=True):
    """Set `model`'s weights from a PyTorch state dict, all or nothing.

    state_dict: a dict {key: numpy array or torch tensor} (model.state_dict()), or the path of
    a .pth/.pt file (read by convlab.torch_checkpoint, never unpickled).
    mapping: which torch module feeds each convlab layer: None (the layer's own name, or
    TORCHVISION_VGG16 when the model is applications.vgg16 and the keys are torchvision's),
    "torchvision_vgg16", a dict {convlab layer name: torch module path} or a function of the
    layer name. strict: refuse keys that no layer takes (as torch's load_state_dict does).
    """
    where = "load_torch_state_dict"
    if isinstance(state_dict, (str, os.PathLike)):
        where = f"{os.fspath(state_dict)!r}"
        state_dict = read_torch_state_dict(state_dict)
    if not hasattr(state_dict, "items"):
        raise TypeError(f"{where}: expected a state dict (a mapping of names to arrays) or a path, "
                        f"got {type(state_dict).__name__}")
    if state_dict and all(str(k).startswith("module.") for k in state_dict):  # saved from DataParallel
        state_dict = {str(k)[len("module."):]: v for k, v in state_dict.items()}
    keys = {str(k): k for k in state_dict}
    weighted = [layer for layer in keras_layer_order(model) if layer.weights]
    prefixes = _resolve_mapping(model, weighted, mapping, keys)
    plan, used = [], set()
    for layer in weighted:
        prefix = prefixes[layer.name]
        label = f"{where}: layer '{layer.name}' ({type(layer).__name__}, torch module '{prefix}')"
        for variable, parameter, convert, torch_shape in _torch_targets(model, layer):
            key = f"{prefix}.{parameter}"
            if key not in keys:
                near = sorted(k for k in keys if k.startswith(prefix + "."))
                raise ValueError(
                    f"{label}: no '{key}' (expected shape {tuple(torch_shape)}) in the state dict"
                    + (f"; it has {', '.join(near)}" if near else "") + "; nothing was loaded"
                )
            array = _to_numpy(key, state_dict[keys[key]])
            if tuple(array.shape) != tuple(torch_shape):
                raise ValueError(
                    f"{label}: '{key}' has shape {tuple(array.shape)}, expected {tuple(torch_shape)} (for "
                    f"{variable.name.split('/')[-1]} {tuple(variable.shape)}); nothing was loaded"
                )
            if array.dtype.kind != "f":
                raise ValueError(
                    f"{label}: '{key}' has dtype {array.dtype}, not a floating-point weight; nothing was loaded")
            plan.append((variable, np.ascontiguousarray(convert(array), dtype=variable.dtype)))
            used.add(key)
    unused = sorted(k for k in keys if k not in used and not k.endswith("num_batches_tracked"))
    if strict and unused:
        raise ValueError(
            f"{where}: {len(unused)} state dict entries fit no layer of model '{model.name}': "
            f"{', '.join(unused[:12])}{' ...' if len(unused) > 12 else ''} (strict=False ignores them); "
            "nothing was loaded"
        )
    try:
        _check_values(model, [variable for variable, _ in plan], [array for _, array in plan])
    except ValueError as error:
        raise ValueError(f"{where}: {error}; nothing was loaded") from None
    for variable, array in plan:
        variable.assign(array)
