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
.npy header is read and checked before any array's bytes are: no object dtype, the shape
and dtype of the model's weight (of the weight an optimizer slot belongs to), and a member
size equal to what the header declares. So a hostile or mismatched file costs a header
read, never an allocation of the size it claims. An archive holding any member that is not
one of the names above (a pickle, a path such as ../../x or /etc/x, a duplicate) is refused
with an error naming it; a damaged one (empty, truncated, a member failing its CRC) with an
error saying which, naming the file.

Writes are atomic: the archive is written to a temporary file beside the target, flushed
to disk, then renamed over it, so a crash mid-save leaves the previous file as it was.
"""

import io
import json
import os
import re
import zipfile
import zlib

import numpy as np

from . import _version
from ._atomic import atomic_write
from .models import deserialize_model, serialize_model

__all__ = ["save_model", "load_model", "save_weights", "load_weights", "UnsafeArchiveError", "CorruptArchiveError"]

FORMAT = "convlab.model"
FORMAT_VERSION = 1
_CONFIG = "config.json"
_MEMBER = re.compile(r"^(weights|optimizer)/[0-9]{4,8}\.npy$")
_MAX_CONFIG_BYTES = 64 * 2**20


class UnsafeArchiveError(ValueError):
    """A saved-model archive holds something convlab refuses to read."""


class CorruptArchiveError(ValueError):
    """A saved-model file that is damaged: empty, cut short, or with a member whose bytes fail
    their CRC or disagree with their .npy header."""


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


def _describe_shape(shape):
    return str(tuple(shape))


class _Archive:
    """A saved-model zip, opened for reading with every member name checked first.

    what: the caller ("load_model", "load_weights"), named in the errors. A path that is a
    directory, an empty file, a zip cut short (no central directory at its end) and a member
    whose bytes fail their CRC each get an error of their own, naming the path.
    """

    def __init__(self, path, what="load_model"):
        self.path, self.what = os.fspath(path), what
        if os.path.isdir(self.path):
            raise IsADirectoryError(f"{what}: {self.path!r} is a directory, not a saved model file "
                                    "(Model.save writes one file, such as model.keras)")
        if not os.path.exists(self.path):
            raise FileNotFoundError(f"no saved model at {self.path!r}")
        size = os.path.getsize(self.path)
        if size == 0:
            raise CorruptArchiveError(f"{what}: {self.path!r} is empty (0 bytes), not a saved model; was its "
                                      "writing or copying interrupted?")
        if not zipfile.is_zipfile(self.path):
            with open(self.path, "rb") as file:
                head = file.read(4)
            if head == b"PK\x03\x04":  # the start of a zip whose end (its central directory) is missing
                raise CorruptArchiveError(
                    f"{what}: {self.path!r} is a truncated zip archive ({size} bytes, its central directory "
                    "at the end is missing): the file was cut short, by an interrupted copy or download; "
                    "copy or save it again"
                )
            raise UnsafeArchiveError(
                f"{self.path!r} is not a convlab saved model (a zip of config.json and .npy files)"
            )
        try:
            self.zip = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, OSError, ValueError) as error:
            raise CorruptArchiveError(f"{what}: {self.path!r} is a damaged zip archive: {error}") from None
        try:
            self._check()
        except BaseException:
            self.zip.close()
            raise

    def _corrupt(self, name, error):
        return CorruptArchiveError(
            f"{self.what}: {self.path!r}: member {name!r} is corrupt ({type(error).__name__}: {error}); the "
            "archive was damaged after it was written, copy or save it again"
        )

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
            text = self.zip.read(_CONFIG)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as error:
            raise self._corrupt(_CONFIG, error) from None
        try:
            self.document = json.loads(text.decode("utf-8"))
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

    def read_header(self, name):
        """(shape, dtype) from a member's .npy header, having read nothing past the header.

        The member's size in the zip directory must be the header plus exactly the bytes the
        header declares, so reading the data later allocates what was checked and no more.
        """
        if not isinstance(name, str) or name not in self.names or not _MEMBER.match(name):
            raise UnsafeArchiveError(f"{self.path!r}: config.json refers to a missing or invalid member {name!r}")
        try:
            with self.zip.open(name) as file:
                try:
                    version = np.lib.format.read_magic(file)
                    if version not in ((1, 0), (2, 0)):
                        raise ValueError(f"unsupported .npy format version {version}")
                    header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                              else np.lib.format.read_array_header_2_0)(file)
                except ValueError as error:
                    raise UnsafeArchiveError(f"{self.path!r}: {name} is not a valid .npy file: {error}") from None
                header_bytes = file.tell()
        except (zipfile.BadZipFile, zlib.error, EOFError) as error:
            raise self._corrupt(name, error) from None
        shape, _, dtype = header
        if dtype.hasobject:
            raise UnsafeArchiveError(f"{self.path!r}: {name} holds Python objects (a pickle); convlab never unpickles")
        declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
        stored = self.zip.getinfo(name).file_size - header_bytes
        if stored != declared:
            raise CorruptArchiveError(
                f"{self.what}: {self.path!r}: {name} declares shape {_describe_shape(shape)} of {dtype} "
                f"({declared} bytes) but holds {stored} bytes of data"
            )
        return tuple(shape), dtype

    def read_array(self, name):
        """The member's array; call read_header(name) first, which checks what this allocates."""
        try:
            with self.zip.open(name) as file:
                return np.lib.format.read_array(file, allow_pickle=False)
        except (zipfile.BadZipFile, zlib.error, EOFError) as error:
            raise self._corrupt(name, error) from None
        except ValueError as error:
            raise UnsafeArchiveError(f"{self.path!r}: {name} could not be read: {error}") from None

    def weight_entries(self):
        entries = self.document.get("weights")
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise UnsafeArchiveError(f"{self.path!r}: config.json has no weight list")
        return entries

    def close(self):
        self.zip.close()


def _read_weights(model, archive):
    """The archive's weight arrays for `model`, checked against the model: the count, then
    every member's header (shape and dtype) before any member's data is read."""
    path = archive.path
    entries = archive.weight_entries()
    weights = model.weights
    if len(entries) != len(weights):
        raise ValueError(f"{path!r} holds {len(entries)} weights, model '{model.name}' has {len(weights)}")
    for variable, entry in zip(weights, entries):
        shape, dtype = archive.read_header(entry.get("file"))
        if shape != variable.shape:
            raise ValueError(
                f"{path!r}: weight {entry.get('name')!r} has shape {_describe_shape(shape)}, model weight "
                f"{variable.name!r} has shape {variable.shape}"
            )
        if dtype != np.dtype(variable.dtype):
            raise ValueError(
                f"{path!r}: weight {entry.get('name')!r} is stored as {dtype}, model weight {variable.name!r} "
                f"is {np.dtype(variable.dtype)}"
            )
        if entry.get("shape") is not None and shape != tuple(entry["shape"]):
            raise ValueError(f"{path!r}: {entry.get('file')} has shape {_describe_shape(shape)}, config.json says "
                             f"{_describe_shape(entry['shape'])}")
        if entry.get("dtype") is not None and dtype != np.dtype(entry["dtype"]):
            raise ValueError(f"{path!r}: {entry.get('file')} has dtype {dtype}, config.json says {entry['dtype']}")
    return [archive.read_array(entry["file"]) for entry in entries]


def _assign_weights(model, archive):
    """Read, check (shapes, dtypes, then values such as batch norm's variances) and assign
    every weight; on any error the model keeps the weights it had."""
    arrays = _read_weights(model, archive)
    weights = model.weights
    try:
        model.check_weight_values({id(variable): array for variable, array in zip(weights, arrays)})
    except ValueError as error:
        raise ValueError(f"{archive.path!r}: {error}") from None
    for variable, array in zip(weights, arrays):
        variable.assign(array)


def _read_optimizer_slots(model, archive, state):
    """The optimizer's slot arrays, one list per model weight, each checked from its header
    (the weight's shape, a float dtype) before any is read."""
    path = archive.path
    weights = model.weights
    slots = state.get("slots") if isinstance(state, dict) else None
    if not isinstance(slots, list) or len(slots) != len(weights) or not all(isinstance(s, list) for s in slots):
        raise UnsafeArchiveError(f"{path!r}: config.json's optimizer state does not list slots for the "
                                 f"{len(weights)} weights of model '{model.name}'")
    for variable, names in zip(weights, slots):
        for name in names:
            shape, dtype = archive.read_header(name)
            if shape != variable.shape or dtype.kind != "f":
                raise ValueError(
                    f"{path!r}: optimizer slot {name} has shape {_describe_shape(shape)} and dtype {dtype}, "
                    f"expected the shape {variable.shape} of weight {variable.name!r} and a float dtype"
                )
    return [[archive.read_array(name) for name in names] for names in slots]


def load_model(path, custom_objects=None, compile=True):
    """The model saved at `path`: same architecture, weights, and (compile=True) the same
    optimizer, loss and metrics with the optimizer state, so training resumes where it stopped."""
    archive = _Archive(path, "load_model")
    try:
        if archive.document.get("model") is None:
            raise ValueError(f"{archive.path!r} holds only weights (save_weights); build the model and call "
                             "model.load_weights(path)")
        model = deserialize_model(archive.document["model"], custom_objects)
        _assign_weights(model, archive)
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
            slots = _read_optimizer_slots(model, archive, state)
            optimizer.set_state(model.weights, {"iterations": state["iterations"], "slots": slots})
        return model
    finally:
        archive.close()


def load_weights(model, path):
    """Set `model`'s weights from a file written by save_weights or save, or from a Keras weights
    file (legacy .h5, Keras 3 .weights.h5, .keras archive: see applications.weight_import),
    told apart by content, since convlab's own archives are often named .keras too."""
    from .applications import weight_import  # foreign formats; h5py is imported only for them

    if weight_import.keras_file_kind(path) is not None:
        weight_import.load_keras_weights(model, path)
        return
    archive = _Archive(path, "load_weights")
    try:
        _assign_weights(model, archive)
    finally:
        archive.close()
