"""Saving and loading models: a zip of one JSON document and .npy arrays, nothing else.

    model.keras (any name; a zip archive)
      config.json            format tag and version, the model's config (layers and their
                             wiring, as data), the compile settings, the list of weight files
                             with each weight's name, shape and dtype, the optimizer state
      weights/0000.npy ...   one array per weight, in the order of model.weights
      optimizer/0000.npy ... the optimizer's step count is in config.json; its slot arrays
                             (momentum, Adam's m and v, ...) are here

Loading never unpickles and never runs code: the JSON is data, layer classes are looked up
by name among convlab's own (or in `custom_objects`, which the caller passes), and every
.npy header is read and checked (no object dtype, the declared shape and dtype) before
its bytes are. An archive holding any member that is not one of the names above (a
pickle, a path such as ../../x or /etc/x, a duplicate) is refused with an error naming it.

Writes are atomic: the archive is written to a temporary file beside the target, flushed
to disk, then renamed over it, so a crash mid-save leaves the previous file as it was.
"""

import io
import json
import os
import re
import zipfile

import numpy as np

from . import _version
from ._atomic import atomic_write

__all__ = ["save_model", "load_model", "save_weights", "load_weights", "UnsafeArchiveError"]

FORMAT = "convlab.model"
FORMAT_VERSION = 1
_CONFIG = "config.json"
_MEMBER = re.compile(r"^(weights|optimizer)/[0-9]{4,8}\.npy$")
_MAX_CONFIG_BYTES = 64 * 2**20


class UnsafeArchiveError(ValueError):
    """A saved-model archive holds something convlab refuses to read."""


# --------------------------------------------------------------------------- writing


def _npy_bytes(array):
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def _write_atomically(path, members):
    """Write {name: bytes} as a zip at `path`, through a temporary file and a rename."""
    with atomic_write(path, "save") as file:
        with zipfile.ZipFile(file, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
            for name, data in members.items():
                archive.writestr(name, data)


def _weights_members(weights, prefix, start_index=0):
    entries, members = [], {}
    for index, weight in enumerate(weights, start=start_index):
        name = f"{prefix}/{index:04d}.npy"
        array = weight.numpy()
        members[name] = _npy_bytes(array)
        entries.append({"name": weight.name, "shape": list(array.shape), "dtype": array.dtype.name, "file": name})
    return entries, members


def _optimizer_state(model):
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return None, {}
    from . import optimizers

    state = optimizer.get_state(model.weights)
    files, members, index = [], {}, 0
    for arrays in state["slots"]:
        names = []
        for array in arrays:
            name = f"optimizer/{index:04d}.npy"
            members[name] = _npy_bytes(array)
            names.append(name)
            index += 1
        files.append(names)
    return {"optimizer": optimizers.serialize(optimizer), "iterations": state["iterations"], "slots": files}, members


def _compile_config(model):
    if getattr(model, "_losses", None) is None:
        return None
    from . import losses, metrics

    return {
        "loss": [losses.serialize(loss) for loss in model._losses],
        "metrics": [[metrics.serialize(m) for m in per_output] for per_output in model._metrics],
        "loss_weights": model._loss_weights_given,
    }


def save_model(model, path, include_optimizer=True):
    """Write `model` (architecture, weights, compile settings and optimizer state) to `path`."""
    from .models import serialize_model

    document = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "convlab_version": _version.__version__,
        "model": serialize_model(model),
        "compile": None, "optimizer_state": None,
    }
    entries, members = _weights_members(model.weights, "weights")
    document["weights"] = entries
    if include_optimizer:
        document["compile"] = _compile_config(model)
        state, optimizer_members = _optimizer_state(model)
        if document["compile"] is not None:
            document["optimizer_state"] = state
            members.update(optimizer_members)
    members = {_CONFIG: json.dumps(document, indent=1).encode("utf-8"), **members}
    _write_atomically(path, members)


def save_weights(model, path):
    """Write only the weights (no architecture, no optimizer) to `path`."""
    entries, members = _weights_members(model.weights, "weights")
    document = {"format": FORMAT, "format_version": FORMAT_VERSION, "convlab_version": _version.__version__,
                "model": None, "weights": entries, "compile": None, "optimizer_state": None}
    _write_atomically(path, {_CONFIG: json.dumps(document, indent=1).encode("utf-8"), **members})


# --------------------------------------------------------------------------- reading


class _Archive:
    """A saved-model zip, opened for reading with every member name checked first."""

    def __init__(self, path):
        self.path = os.fspath(path)
        if not os.path.exists(self.path):
            raise FileNotFoundError(f"no saved model at {self.path!r}")
        if not zipfile.is_zipfile(self.path):
            raise UnsafeArchiveError(
                f"{self.path!r} is not a convlab saved model (a zip of config.json and .npy files)"
            )
        self.zip = zipfile.ZipFile(self.path)
        try:
            self._check()
        except BaseException:
            self.zip.close()
            raise

    def _check(self):
        names = [info.filename for info in self.zip.infolist()]
        seen = set()
        for name in names:
            if name in seen:
                raise UnsafeArchiveError(f"{self.path!r}: member {name!r} appears twice; refusing to load")
            seen.add(name)
            if name != _CONFIG and not _MEMBER.match(name):
                raise UnsafeArchiveError(
                    f"{self.path!r}: unexpected member {name!r}; a convlab model holds only config.json, "
                    "weights/NNNN.npy and optimizer/NNNN.npy (no pickles, no paths outside the archive)"
                )
        if _CONFIG not in seen:
            raise UnsafeArchiveError(f"{self.path!r}: no config.json in the archive")
        if self.zip.getinfo(_CONFIG).file_size > _MAX_CONFIG_BYTES:
            raise UnsafeArchiveError(f"{self.path!r}: config.json is larger than {_MAX_CONFIG_BYTES} bytes")
        try:
            self.document = json.loads(self.zip.read(_CONFIG).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise UnsafeArchiveError(f"{self.path!r}: config.json is not valid JSON: {error}") from None
        if not isinstance(self.document, dict) or self.document.get("format") != FORMAT:
            raise UnsafeArchiveError(f"{self.path!r}: config.json does not describe a convlab model")
        if self.document.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{self.path!r}: saved with format version {self.document.get('format_version')!r}, this convlab "
                f"reads version {FORMAT_VERSION}"
            )
        self.names = seen

    def read_array(self, name, shape=None, dtype=None):
        if not isinstance(name, str) or name not in self.names or not _MEMBER.match(name):
            raise UnsafeArchiveError(f"{self.path!r}: config.json refers to a missing or invalid member {name!r}")
        with self.zip.open(name) as file:
            try:
                version = np.lib.format.read_magic(file)
                header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                          else np.lib.format.read_array_header_2_0)(file)
            except ValueError as error:
                raise UnsafeArchiveError(f"{self.path!r}: {name} is not a valid .npy file: {error}") from None
            stored_shape, fortran, stored_dtype = header
            if stored_dtype.hasobject:
                raise UnsafeArchiveError(
                    f"{self.path!r}: {name} holds Python objects (a pickle); convlab never unpickles"
                )
            if shape is not None and tuple(stored_shape) != tuple(shape):
                raise ValueError(f"{self.path!r}: {name} has shape {stored_shape}, config.json says {tuple(shape)}")
            if dtype is not None and stored_dtype != np.dtype(dtype):
                raise ValueError(f"{self.path!r}: {name} has dtype {stored_dtype}, config.json says {dtype}")
        with self.zip.open(name) as file:
            try:
                return np.lib.format.read_array(file, allow_pickle=False)
            except ValueError as error:
                raise UnsafeArchiveError(f"{self.path!r}: {name} could not be read: {error}") from None

    def weights(self):
        entries = self.document.get("weights")
        if not isinstance(entries, list):
            raise UnsafeArchiveError(f"{self.path!r}: config.json has no weight list")
        return [self.read_array(e.get("file"), e.get("shape"), e.get("dtype")) for e in entries], entries

    def close(self):
        self.zip.close()


def _assign_weights(model, arrays, entries, path):
    weights = model.weights
    if len(arrays) != len(weights):
        raise ValueError(f"{path!r} holds {len(arrays)} weights, model '{model.name}' has {len(weights)}")
    for variable, array, entry in zip(weights, arrays, entries):
        if tuple(array.shape) != variable.shape:
            raise ValueError(
                f"{path!r}: weight {entry.get('name')!r} has shape {tuple(array.shape)}, model weight "
                f"{variable.name!r} has shape {variable.shape}"
            )
    for variable, array in zip(weights, arrays):
        variable.assign(array)


def load_model(path, custom_objects=None, compile=True):
    """The model saved at `path`: same architecture, weights, and (compile=True) the same
    optimizer, loss and metrics with the optimizer state, so training resumes where it stopped."""
    from .models import deserialize_model

    archive = _Archive(path)
    try:
        if archive.document.get("model") is None:
            raise ValueError(f"{archive.path!r} holds only weights (save_weights); build the model and call "
                             "model.load_weights(path)")
        model = deserialize_model(archive.document["model"], custom_objects)
        arrays, entries = archive.weights()
        _assign_weights(model, arrays, entries, archive.path)
        compile_config = archive.document.get("compile")
        state = archive.document.get("optimizer_state")
        if compile and compile_config is not None and state is not None:
            from . import losses, metrics, optimizers

            optimizer = optimizers.deserialize(state["optimizer"])
            model.compile(
                optimizer=optimizer,
                loss=[losses.deserialize(entry) for entry in compile_config["loss"]],
                metrics=[[metrics.deserialize(m) for m in per_output] for per_output in compile_config["metrics"]],
                loss_weights=compile_config.get("loss_weights"),
            )
            slots = [[archive.read_array(name) for name in names] for names in state["slots"]]
            optimizer.set_state(model.weights, {"iterations": state["iterations"], "slots": slots})
        return model
    finally:
        archive.close()


def load_weights(model, path):
    """Set `model`'s weights from a file written by save_weights or save."""
    archive = _Archive(path)
    try:
        arrays, entries = archive.weights()
        _assign_weights(model, arrays, entries, archive.path)
    finally:
        archive.close()
