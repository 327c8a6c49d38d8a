"""PyTorch checkpoints (state dicts) read without PyTorch and without running code from the file.

A checkpoint written by torch.save is a pickle, and a pickle is a program for a small stack
machine: its GLOBAL opcode imports any name and REDUCE calls it, so `torch.load` of an
untrusted file (without weights_only=True) can run anything. This reader never hands the
file to an ordinary unpickler. Its unpickler resolves only the few globals a state dict
needs, each to a stand-in defined here, and refuses every other global (naming it) before
anything is called:

    collections.OrderedDict            the dict itself (and the tensors' empty hook dicts)
    torch._utils._rebuild_tensor_v2    a tensor: (storage, offset, size, stride, ...)
    torch._utils._rebuild_tensor       the same, from older files
    torch._utils._rebuild_parameter    an nn.Parameter: its tensor
    torch.FloatStorage, LongStorage..  the element type of a storage (see _STORAGE_DTYPES)

Tensors come back as numpy arrays (C-contiguous copies in native byte order), so neither
reading nor using the result needs torch.

torch.save writes one of two formats, and both are read:

  zip (torch >= 1.6, the default): a zip archive with one top folder,
      <top>/data.pkl      the pickled object. A storage appears as a "persistent id"
                          ('storage', torch.FloatStorage, key, location, numel)
      <top>/data/<key>    each storage's bytes, numel * element size of them
      <top>/byteorder     "little" or "big" (absent before torch 1.10: little)
  legacy (torch < 1.6, or _use_new_zipfile_serialization=False): pickles back to back,
      the magic number 0x1950a86a20f9469cfc6c, the protocol version 1001, the system info
      {little_endian, type_sizes}, the object (persistent ids ('storage', FloatStorage,
      root_key, location, numel, view_metadata)), the list of storage keys; then, for each
      key in that order, an int64 element count and the storage's bytes.

A tensor is the view  tensor[i0, i1, ...] = storage[offset + i0 * stride0 + i1 * stride1 + ...],
so a transposed or sliced tensor shares its storage with others; every view is checked to
lie inside its storage before it is read.

to_keras_layout turns PyTorch's weight layouts into the ones convlab (and Keras) keeps.
"""

import collections
import io
import os
import pickle
import struct
import zipfile

import numpy as np

__all__ = ["CheckpointError", "load", "load_state_dict", "to_keras_layout"]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

# torch's storage class names -> the numpy type of their elements. bfloat16 has no numpy
# type: it is read as uint16 and widened to float32 exactly (its bits are float32's upper 16).
_STORAGE_DTYPES = {
    "DoubleStorage": "f8", "FloatStorage": "f4", "HalfStorage": "f2", "BFloat16Storage": "u2",
    "LongStorage": "i8", "IntStorage": "i4", "ShortStorage": "i2", "CharStorage": "i1",
    "ByteStorage": "u1", "BoolStorage": "?", "ComplexDoubleStorage": "c16", "ComplexFloatStorage": "c8",
}


class CheckpointError(ValueError):
    """A file that is not a PyTorch checkpoint this reader accepts; the message says why."""


class _MalformedPickle(CheckpointError):
    """A pickle that does not parse (as opposed to one refused for what it names)."""


class _Refuse:
    """Stand-ins refuse pickle's BUILD (setting state), so a file cannot alter them."""

    __slots__ = ()

    def __setstate__(self, state):
        raise pickle.UnpicklingError(f"refusing to set the state of {self!r}")


class _StorageType(_Refuse):
    __slots__ = ("name", "dtype")

    def __init__(self, name):
        self.name, self.dtype = name, np.dtype(_STORAGE_DTYPES[name])

    def __repr__(self):
        return f"torch.{self.name}"


class _Storage(_Refuse):
    """A storage named in the pickle: its key, element type, and the element range
    [start, start + numel) of the key's bytes it covers (a legacy view covers part of its root)."""

    __slots__ = ("key", "storage_type", "start", "numel")

    def __init__(self, key, storage_type, start, numel):
        self.key, self.storage_type, self.start, self.numel = key, storage_type, start, numel

    def __repr__(self):
        return f"<storage {self.key!r} {self.storage_type!r}>"


class _Tensor(_Refuse):
    """A tensor to be read once the storages are: a strided view of a _Storage."""

    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def __repr__(self):
        return f"<tensor {self.size!r}>"


class _Global(_Refuse):
    """A callable stand-in for one allowed global."""

    __slots__ = ("qualname", "function")

    def __init__(self, qualname, function):
        self.qualname, self.function = qualname, function

    def __call__(self, *args, **kwargs):
        return self.function(*args, **kwargs)

    def __repr__(self):
        return self.qualname


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    if backward_hooks:
        raise pickle.UnpicklingError(f"a tensor carries backward hooks {backward_hooks!r}; a state dict has none")
    if metadata:
        # conj/neg bits and the like would change the values; a state dict has none
        raise pickle.UnpicklingError(f"a tensor carries metadata {metadata!r}, which this reader does not apply")
    return _Tensor(storage, storage_offset, size, stride)


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _Tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    if backward_hooks:
        raise pickle.UnpicklingError("a parameter carries backward hooks; a state dict has none")
    return data


_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _Global("torch._utils._rebuild_tensor_v2", _rebuild_tensor_v2),
    ("torch._utils", "_rebuild_tensor"): _Global("torch._utils._rebuild_tensor", _rebuild_tensor),
    ("torch._utils", "_rebuild_parameter"): _Global("torch._utils._rebuild_parameter", _rebuild_parameter),
}
_ALLOWED_GLOBALS.update({("torch", name): _StorageType(name) for name in _STORAGE_DTYPES})


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only _ALLOWED_GLOBALS; storages (persistent ids) become _Storage records."""

    def __init__(self, file, path, storages, legacy):
        super().__init__(file, encoding="utf-8")
        self.path, self.storages, self.legacy = path, storages, legacy

    def find_class(self, module, name):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except (KeyError, TypeError):
            allowed = ", ".join(sorted(f"{m}.{n}" for m, n in _ALLOWED_GLOBALS))
            raise CheckpointError(
                f"{self.path}: refusing to load the global '{module}.{name}' named in the checkpoint's pickle "
                f"(nothing from the file is executed; a state dict of tensors only uses {allowed})"
            ) from None

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or not pid:
            raise CheckpointError(f"{self.path}: unexpected persistent id {pid!r}, expected a ('storage', ...) tuple")
        typename = pid[0].decode("ascii") if isinstance(pid[0], bytes) else pid[0]
        if typename != "storage":
            raise CheckpointError(
                f"{self.path}: unexpected persistent id of type {typename!r} (a pickled module's source?); "
                "only tensor storages are read"
            )
        expected = 6 if self.legacy else 5
        if len(pid) != expected:
            raise CheckpointError(f"{self.path}: storage id {pid!r} has {len(pid)} fields, expected {expected}")
        storage_type, key, numel = pid[1], pid[2], pid[4]
        key = key.decode("ascii") if isinstance(key, bytes) else key
        if not isinstance(storage_type, _StorageType):
            raise CheckpointError(f"{self.path}: storage {key!r} has type {storage_type!r}, expected a torch.*Storage")
        if not isinstance(key, str) or not _is_count(numel):
            raise CheckpointError(f"{self.path}: malformed storage id {pid!r}")
        root = self.storages.setdefault(key, (storage_type, numel))
        if root != (storage_type, numel):
            raise CheckpointError(
                f"{self.path}: storage {key!r} is declared twice, as {root} and {(storage_type, numel)}")
        view = pid[5] if self.legacy else None
        if view is None:
            return _Storage(key, storage_type, 0, numel)
        if not (isinstance(view, tuple) and len(view) == 3 and _is_count(view[1]) and _is_count(view[2])):
            raise CheckpointError(f"{self.path}: malformed storage view {view!r} of storage {key!r}")
        _, start, view_numel = view
        if start + view_numel > numel:
            raise CheckpointError(
                f"{self.path}: a view of elements [{start}, {start + view_numel}) of storage {key!r} "
                f"exceeds its {numel} elements"
            )
        return _Storage(key, storage_type, start, view_numel)


def _is_count(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _unpickle(data, path, storages, legacy):
    try:
        return _RestrictedUnpickler(data, path, storages, legacy).load()
    except CheckpointError:
        raise
    except Exception as error:  # a malformed pickle: EOF, bad opcode, a stand-in called wrongly
        raise _MalformedPickle(
            f"{path}: cannot read the checkpoint's pickle: {type(error).__name__}: {error}") from None


def _array_of(tensor, buffers, path):
    """The numpy array a _Tensor describes, after checking it lies inside its storage."""
    storage = tensor.storage
    if not isinstance(storage, _Storage):
        raise CheckpointError(f"{path}: a tensor's storage is {storage!r}, expected a storage")
    size, stride, offset = tensor.size, tensor.stride, tensor.offset
    if not (isinstance(size, tuple) and isinstance(stride, tuple) and len(size) == len(stride)
            and all(map(_is_count, size + stride)) and _is_count(offset)):
        raise CheckpointError(
            f"{path}: malformed tensor in storage {storage.key!r}: size {size!r}, stride {stride!r}, offset {offset!r}"
        )
    storage_array = buffers[storage.key][storage.start:storage.start + storage.numel]
    if 0 in size:
        array = np.zeros(size, dtype=storage_array.dtype)
    else:
        last = offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= storage.numel:
            raise CheckpointError(
                f"{path}: a tensor of size {size} and stride {stride} at offset {offset} reads element {last} "
                f"of storage {storage.key!r}, which has {storage.numel}"
            )
        itemsize = storage_array.dtype.itemsize
        array = np.lib.stride_tricks.as_strided(storage_array[offset:], shape=size,
                                                strides=tuple(s * itemsize for s in stride), writeable=False)
    # A C-contiguous copy in native byte order that owns its memory (no view of the file's bytes).
    array = np.array(array, dtype=array.dtype.newbyteorder("="), order="C", copy=True)
    if storage.storage_type.name == "BFloat16Storage":
        array = (array.astype(np.uint32) << 16).view(np.float32)
    return array


def _materialize(value, buffers, path):
    """The unpickled structure with each _Tensor replaced by its array."""
    if isinstance(value, _Tensor):
        return _array_of(value, buffers, path)
    if isinstance(value, dict):
        result = collections.OrderedDict() if isinstance(value, collections.OrderedDict) else {}
        for key, item in value.items():
            result[key] = _materialize(item, buffers, path)
        return result
    if isinstance(value, (list, tuple)):
        items = [_materialize(item, buffers, path) for item in value]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, (_Storage, _StorageType, _Global)):
        raise CheckpointError(f"{path}: the checkpoint holds {value!r} outside a tensor; only tensors are read")
    return value


def _storage_dtype(storage_type, little_endian):
    return storage_type.dtype.newbyteorder("<" if little_endian else ">")


def _load_zip(archive, path):
    pickles = [name for name in archive.namelist() if name.endswith("data.pkl") and name.count("/") == 1]
    if len(pickles) != 1:
        raise CheckpointError(
            f"{path}: a PyTorch zip checkpoint holds exactly one <folder>/data.pkl, found {pickles or 'none'}"
        )
    prefix = pickles[0][:-len("data.pkl")]
    little_endian = True
    if prefix + "byteorder" in archive.namelist():
        order = archive.read(prefix + "byteorder").decode("ascii", "replace").strip()
        if order not in ("little", "big"):
            raise CheckpointError(f"{path}: {prefix}byteorder says {order!r}, expected 'little' or 'big'")
        little_endian = order == "little"
    storages = {}
    obj = _unpickle(io.BytesIO(archive.read(pickles[0])), path, storages, legacy=False)
    buffers = {}
    for key, (storage_type, numel) in storages.items():
        member = f"{prefix}data/{key}"
        try:
            data = archive.read(member)
        except KeyError:
            raise CheckpointError(f"{path}: storage {key!r} is used by a tensor but {member} is missing") from None
        dtype = _storage_dtype(storage_type, little_endian)
        if len(data) < numel * dtype.itemsize:
            raise CheckpointError(
                f"{path}: {member} has {len(data)} bytes, storage {key!r} needs {numel} x {dtype.itemsize}"
            )
        buffers[key] = np.frombuffer(data, dtype=dtype, count=numel)
    return obj, buffers


def _load_legacy(data, path):
    stream = io.BytesIO(data)
    try:
        magic = _unpickle(stream, path, {}, legacy=True)
        found = f"its first pickle holds {magic!r:.60}"
    except _MalformedPickle as error:  # refusals (a global in the first pickle) go through
        magic, found = None, f"it does not start with a pickle: {error.__context__ or error}"
    if magic != _LEGACY_MAGIC:
        raise CheckpointError(f"{path}: not a PyTorch checkpoint: neither a zip archive nor a legacy file "
                              f"({found}; expected the magic number {_LEGACY_MAGIC:#x})")
    protocol = _unpickle(stream, path, {}, legacy=True)
    if protocol != _LEGACY_PROTOCOL:
        raise CheckpointError(f"{path}: legacy checkpoint protocol {protocol!r}, expected {_LEGACY_PROTOCOL}")
    sys_info = _unpickle(stream, path, {}, legacy=True)
    if not isinstance(sys_info, dict) or not isinstance(sys_info.get("little_endian"), bool):
        raise CheckpointError(f"{path}: malformed system info {sys_info!r:.200}")
    little_endian = sys_info["little_endian"]
    storages = {}
    obj = _unpickle(stream, path, storages, legacy=True)
    keys = _unpickle(stream, path, {}, legacy=True)
    if not isinstance(keys, list) or sorted(map(str, keys)) != sorted(storages):
        raise CheckpointError(
            f"{path}: the legacy checkpoint lists storages {keys!r:.200}, but its tensors use {sorted(storages)!r:.200}"
        )
    count_format = "<q" if little_endian else ">q"
    buffers = {}
    for key in keys:
        storage_type, numel = storages[key]
        dtype = _storage_dtype(storage_type, little_endian)
        header = stream.read(8)
        if len(header) != 8:
            raise CheckpointError(f"{path}: the file ends before the data of storage {key!r}")
        (count,) = struct.unpack(count_format, header)
        if count != numel:
            raise CheckpointError(f"{path}: storage {key!r} holds {count} elements, its tensors declare {numel}")
        raw = stream.read(numel * dtype.itemsize)
        if len(raw) != numel * dtype.itemsize:
            raise CheckpointError(f"{path}: the file ends inside the data of storage {key!r}")
        buffers[key] = np.frombuffer(raw, dtype=dtype, count=numel)
    return obj, buffers


def load(path):
    """What torch.save wrote into `path`, with every tensor as a numpy array.

    Containers (dict, OrderedDict, list, tuple), numbers, strings and None come back as they
    are. Anything else in the file (a pickled nn.Module, an optimizer's callables, any other
    global) is refused with a CheckpointError naming it, before anything from the file runs.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as error:
        raise CheckpointError(f"cannot read the checkpoint {path!r}: {error.strerror or error}") from None
    if zipfile.is_zipfile(io.BytesIO(data)):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            obj, buffers = _load_zip(archive, path)
    else:
        obj, buffers = _load_legacy(data, path)
    return _materialize(obj, buffers, path)


def load_state_dict(path):
    """A PyTorch state dict file (torch.save(model.state_dict(), path)) as an OrderedDict
    from parameter names to numpy arrays, in the file's order. See `load`."""
    state = load(path)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: holds a {type(state).__name__}, expected a state dict (a dict of tensors)")
    for name, value in state.items():
        if not isinstance(name, str) or not isinstance(value, np.ndarray):
            raise CheckpointError(
                f"{path}: entry {name!r} is a {type(value).__name__}, a state dict maps names to tensors"
                + (" (a training checkpoint? pass the state dict it holds)" if isinstance(value, dict) else "")
            )
    return collections.OrderedDict(state)


def to_keras_layout(weight, kind, depth_multiplier=1):
    """A PyTorch weight rearranged into the layout convlab's (and Keras') layer keeps.

        kind="conv2d"            Conv2d (out, in, kh, kw)             -> Conv2D (kh, kw, in, out)
        kind="depthwise_conv2d"  Conv2d with groups=in
                                 (in * depth_multiplier, 1, kh, kw)   -> DepthwiseConv2D (kh, kw, in, depth_multiplier)
        kind="dense"             Linear (out, in)                     -> Dense (in, out)

    PyTorch's depthwise output channel i * depth_multiplier + m reads input channel i, as
    Keras' does, so the depthwise weight only needs its axes regrouped. The values are
    unchanged (convolution in both is cross-correlation: no kernel flip). Returns a
    C-contiguous copy.
    """
    array = np.asarray(weight)
    expected_ndim = {"conv2d": 4, "depthwise_conv2d": 4, "dense": 2}
    if kind not in expected_ndim:
        raise ValueError(f"to_keras_layout: kind must be one of {', '.join(expected_ndim)}, got {kind!r}")
    if array.ndim != expected_ndim[kind]:
        layouts = {"conv2d": "(out, in, kh, kw)", "depthwise_conv2d": "(in * depth_multiplier, 1, kh, kw)",
                   "dense": "(out, in)"}
        raise ValueError(f"to_keras_layout: a {kind} weight has shape {layouts[kind]}, got shape {array.shape}")
    if kind == "dense":
        return np.ascontiguousarray(array.T)
    if kind == "conv2d":
        return np.ascontiguousarray(array.transpose(2, 3, 1, 0))
    if not isinstance(depth_multiplier, int) or depth_multiplier < 1:
        raise ValueError(f"to_keras_layout: depth_multiplier must be a positive int, got {depth_multiplier!r}")
    out_channels, one, kh, kw = array.shape
    if one != 1 or out_channels % depth_multiplier:
        raise ValueError(
            f"to_keras_layout: a depthwise weight with depth_multiplier {depth_multiplier} has shape "
            f"(in * {depth_multiplier}, 1, kh, kw), got shape {array.shape}"
        )
    grouped = array.reshape(out_channels // depth_multiplier, depth_multiplier, kh, kw)
    return np.ascontiguousarray(grouped.transpose(2, 3, 0, 1))
