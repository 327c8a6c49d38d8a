"""Image files to arrays and back, with pillow (Keras' keras.utils image functions).

    load_img(path, color_mode="rgb", target_size=None, interpolation="nearest")  -> PIL image
    img_to_array(img, data_format=None, dtype="float32", bgr=False)            -> (h, w, c) array
    array_to_img(x, data_format=None, scale=True, dtype="float32", bgr=False)  -> PIL image
    save_img(path, x, data_format=None, file_format=None, scale=True, bgr=False)  writes a file

Arrays are channels last, (height, width, channels), as everywhere in convlab; a grayscale
image is (h, w, 1). `target_size` is (height, width), as in Keras, although pillow itself
speaks (width, height).

`array_to_img(x, scale=True)` maps the range of x onto 0..255 the way Keras does,

    x = (x - min(x)) / (max(x) - min(x)) * 255      (no division when max(x) == min(x))

and then converts to uint8 by truncation (numpy's astype), so a value that lands on
254.99997 becomes 254, exactly as in Keras.

save_img is atomic: the picture is written to a temporary file in the destination folder
and renamed over `path`, so a reader sees the old file or the new one, never half of one.

OpenCV. cv2.imread returns a uint8 array (height, width, 3) in BGR order (BGRA with 4
channels, (height, width) for grayscale). img_to_array takes all three as they are;
array_to_img and save_img the colour ones (a grayscale one as gray[:, :, None], as in
Keras). bgr=True reverses the order of the first three channels (BGR <-> RGB), so
`array_to_img(cv2.imread(path), bgr=True)` shows the right colours, and
`img_to_array(load_img(path), bgr=True)` gives the BGR array cv2 would have read. OpenCV
itself is never imported.
"""

import io
import os
import re
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from .._atomic import atomic_write

__all__ = ["load_img", "img_to_array", "array_to_img", "save_img", "INTERPOLATION_METHODS", "COLOR_MODES"]

# Keras' names for pillow's resampling filters.
INTERPOLATION_METHODS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "hamming": Image.Resampling.HAMMING,
    "box": Image.Resampling.BOX,
    "lanczos": Image.Resampling.LANCZOS,
}

# color_mode -> number of channels of the array.
COLOR_MODES = {"grayscale": 1, "rgb": 3, "rgba": 4}

_DATA_FORMATS = ("channels_last", "channels_first")


def _check_color_mode(color_mode):
    if color_mode not in COLOR_MODES:
        raise ValueError(f"color_mode must be one of {sorted(COLOR_MODES)}, got {color_mode!r}")
    return color_mode


def _check_interpolation(interpolation, methods=INTERPOLATION_METHODS):
    if interpolation not in methods:
        raise ValueError(f"interpolation must be one of {sorted(methods)}, got {interpolation!r}")
    return methods[interpolation]


def _check_size(size, name):
    """A (height, width) pair of positive ints, as a tuple."""
    try:
        pair = tuple(size)
    except TypeError:
        pair = None
    if (pair is None or len(pair) != 2
            or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in pair)):
        raise ValueError(f"{name} must be a (height, width) pair of positive ints, got {size!r}")
    return int(pair[0]), int(pair[1])


def _check_data_format(data_format):
    if data_format is None:
        return "channels_last"
    if data_format not in _DATA_FORMATS:
        raise ValueError(f"data_format must be None or one of {list(_DATA_FORMATS)}, got {data_format!r}")
    return data_format


def _convert_color(img, color_mode):
    """Keras' conversions: grayscale keeps pillow's 8/16/32-bit gray modes, others convert."""
    if color_mode == "grayscale":
        if img.mode not in ("L", "I;16", "I"):
            img = img.convert("L")
    elif color_mode == "rgba":
        if img.mode != "RGBA":
            img = img.convert("RGBA")
    elif img.mode != "RGB":
        img = img.convert("RGB")
    return img


def _center_crop_box(width, height, target_height, target_width):
    """The largest centered box of the target aspect ratio (Keras' keep_aspect_ratio crop)."""
    crop_height = min(height, (width * target_height) // target_width)
    crop_width = min(width, (height * target_width) // target_height)
    top = (height - crop_height) // 2
    left = (width - crop_width) // 2
    return left, top, left + crop_width, top + crop_height


def _resize(img, target_size, resample, keep_aspect_ratio):
    height, width = target_size
    if keep_aspect_ratio:
        box = _center_crop_box(img.width, img.height, height, width)
        if box != (0, 0, img.width, img.height):
            img = img.crop(box)
    if img.size != (width, height):
        img = img.resize((width, height), resample)
    return img


def _decode(data, source, what="load_img"):
    """Pillow's image from the bytes of a file, decoded now. `source` names the file in the
    errors: one line that says what is wrong with which file (not an image, truncated)."""
    try:
        img = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ValueError(f"{what}: {source} is not an image file pillow can read ({len(data)} bytes; "
                         f"pillow says: {_reason(error)})") from None
    except Image.DecompressionBombError as error:
        raise ValueError(f"{what}: {source} is refused by pillow as a decompression bomb: {error}") from None
    try:
        img.load()
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ValueError(f"{what}: {source} is a truncated or corrupt {img.format} image ({len(data)} bytes; "
                         f"pillow says: {_reason(error)})") from None
    return img


def _reason(error):
    """Pillow's message without the in-memory object it sometimes names (<_io.BytesIO object at 0x...>)."""
    text = " ".join(str(error).split())
    return re.sub(r"\s*<_io\.BytesIO object at 0x[0-9a-fA-F]+>", "", text) or type(error).__name__


def _open_decoded(path, what="load_img"):
    """Open the file at `path` with pillow and decode its pixels now (the file is closed on return)."""
    with open(path, "rb") as file:
        data = file.read()
    return _decode(data, f"{path!r}", what)


def load_img(path, color_mode="rgb", target_size=None, interpolation="nearest", keep_aspect_ratio=False):
    """Load an image file as a PIL image (keras.utils.load_img).

    path: file path (str or path-like) or a binary file object.
    color_mode: "rgb" (3 channels), "grayscale" (1) or "rgba" (4).
    target_size: None (keep the file's size) or (height, width) to resize to.
    interpolation: pillow filter used to resize: "nearest", "bilinear", "bicubic",
        "hamming", "box" or "lanczos".
    keep_aspect_ratio: crop the largest centered box of the target aspect ratio before
        resizing, instead of stretching.
    """
    _check_color_mode(color_mode)
    resample = _check_interpolation(interpolation)
    if target_size is not None:
        target_size = _check_size(target_size, "target_size")
    if hasattr(path, "read"):
        name = getattr(path, "name", None)
        img = _decode(path.read(), f"the file object {name!r}" if isinstance(name, str) else "the file object")
    else:
        try:
            path = os.fspath(path)
        except TypeError:
            raise TypeError(f"path must be a file path or a binary file object, got {type(path).__name__}") from None
        if not os.path.isfile(path):
            raise FileNotFoundError(f"load_img: no image file at path {path!r}")
        img = _open_decoded(path)
    img = _convert_color(img, color_mode)
    if target_size is not None:
        img = _resize(img, target_size, resample, keep_aspect_ratio)
    return img


def _flip_channels(x, bgr, where):
    """x (h, w, c) with its first three channels reversed when bgr is True (BGR <-> RGB)."""
    if not isinstance(bgr, (bool, np.bool_)):
        raise ValueError(f"{where}: bgr must be True or False, got {bgr!r}")
    if bgr and x.shape[2] in (3, 4):
        x = np.concatenate([x[:, :, 2::-1], x[:, :, 3:]], axis=2)
    return x


def img_to_array(img, data_format=None, dtype="float32", bgr=False):
    """A PIL image (or an array, such as cv2.imread's) as a numpy array: (h, w, c) for
    channels_last, (c, h, w) for channels_first.

    A single-band image (grayscale) gets a channel axis of 1. bgr=True reverses the first
    three channels (BGR <-> RGB; see the module docstring).
    """
    data_format = _check_data_format(data_format)
    x = np.array(img, dtype=dtype)
    if x.ndim == 2:
        x = x.reshape(x.shape + (1,))
    elif x.ndim != 3:
        raise ValueError(f"img must be an image of rank 2 or 3 (height, width[, channels]), "
                         f"got an array of shape {x.shape}")
    x = _flip_channels(x, bgr, "img_to_array")
    if data_format == "channels_first":
        x = np.ascontiguousarray(x.transpose(2, 0, 1))
    return x


def array_to_img(x, data_format=None, scale=True, dtype="float32", bgr=False):
    """A (h, w, c) array (c = 1, 3 or 4) as a PIL image (L, RGB or RGBA).

    scale=True maps min(x)..max(x) onto 0..255 (see the module docstring); scale=False
    expects values already in 0..255. One channel with values above 255 (scale=False)
    gives a 32-bit integer image (mode "I"), as in Keras. bgr=True: x is in BGR (BGRA)
    order, as cv2.imread returns it.
    """
    data_format = _check_data_format(data_format)
    x = np.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"x must be a single image of rank 3 ((height, width, channels) for "
                         f"{data_format}), got an array of shape {x.shape}")
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise TypeError(f"x must be a numeric array, got dtype {x.dtype}")
    x = np.array(x, dtype=dtype, copy=True)
    if data_format == "channels_first":
        x = x.transpose(1, 2, 0)
    channels = x.shape[2]
    if channels not in (1, 3, 4):
        raise ValueError(f"x must have 1, 3 or 4 channels (last axis for {data_format}), "
                         f"got {channels} in an array of shape {x.shape}")
    x = _flip_channels(x, bgr, "array_to_img")
    if scale:
        x = x - np.min(x)
        x_max = np.max(x)
        if x_max != 0:
            x /= x_max
        x *= 255
    if channels == 4:
        return Image.fromarray(np.ascontiguousarray(x.astype("uint8")), "RGBA")
    if channels == 3:
        return Image.fromarray(np.ascontiguousarray(x.astype("uint8")), "RGB")
    if np.max(x) > 255:
        return Image.fromarray(np.ascontiguousarray(x[:, :, 0].astype("int32")), "I")
    return Image.fromarray(np.ascontiguousarray(x[:, :, 0].astype("uint8")), "L")


def _format_for(path, file_format):
    """The pillow format name for `file_format`, or inferred from the extension of `path`."""
    if file_format is not None:
        name = str(file_format).lower()
        if name == "jpg":
            name = "jpeg"
        known = {f.lower() for f in Image.registered_extensions().values()}
        if name not in known:
            raise ValueError(f"file_format {file_format!r} is not a format pillow can write; "
                             f"expected one of {sorted(known)}")
        return name.upper()
    extension = os.path.splitext(path)[1].lower()
    formats = Image.registered_extensions()
    if extension not in formats:
        raise ValueError(f"cannot tell the image format of path {path!r} from its extension {extension!r}; "
                         f"give file_format= (e.g. 'png', 'jpeg') or use an extension such as .png or .jpg")
    return formats[extension]


def save_img(path, x, data_format=None, file_format=None, scale=True, bgr=False, **kwargs):
    """Write the array `x` (see array_to_img) as an image file at `path`, atomically.

    bgr=True: x is in BGR (BGRA) order, as cv2.imread returns it; the file gets the right colours.

    file_format: a pillow format name ("png", "jpeg", ...) or None to infer it from the
        extension of `path`. Extra keyword arguments go to PIL.Image.save (e.g. quality=95).
    An RGBA image saved as JPEG loses its alpha channel (with a warning), as in Keras.
    """
    try:
        path = os.fspath(path)
    except TypeError:
        raise TypeError(f"path must be a file path, got {type(path).__name__}") from None
    fmt = _format_for(path, file_format)
    img = array_to_img(x, data_format=data_format, scale=scale, bgr=bgr)
    if img.mode == "RGBA" and fmt == "JPEG":
        warnings.warn("save_img: JPEG has no alpha channel; the image is saved as RGB", stacklevel=2)
        img = img.convert("RGB")
    with atomic_write(path, "save_img") as file:
        img.save(file, format=fmt, **kwargs)
