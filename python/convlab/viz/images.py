"""What every visualization routine shares: numpy arrays out of Tensors and CuPy arrays,
one image made into a batch of one for a model, loading an image file the way a model
wants it, and PNG files written atomically (a temporary file in the same folder, then
os.replace, so a reader never sees half a PNG).
"""

import math
import os
import re

import numpy as np

from .._atomic import atomic_write

__all__ = ["to_numpy", "one_image", "model_input", "model_device", "model_batch", "load_image",
           "default_rescale", "write_png", "titled", "png_name", "tile_picture", "tile_scale", "enlarged"]


def to_numpy(value, name="value"):
    """A numpy array from a numpy array, a convlab Tensor, a CuPy array or a nested list."""
    from ..autograd import Tensor

    if isinstance(value, Tensor):
        return value.numpy()
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "__cuda_array_interface__") and hasattr(value, "get"):
        return value.get()
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} must be an array or a convlab Tensor, got {type(value).__name__}: {error}") from None


def one_image(value, name="image", allow_2d=False):
    """One image (h, w, c) from (h, w, c) or a batch of one (1, h, w, c); (h, w) too if allow_2d."""
    array = to_numpy(value, name)
    if array.ndim == 4:
        if array.shape[0] != 1:
            raise ValueError(
                f"{name} must hold ONE image, shape (h, w, c) or (1, h, w, c); got a batch of shape {array.shape}"
            )
        array = array[0]
    if allow_2d and array.ndim == 2:
        return array
    if array.ndim != 3:
        expected = "(h, w), (h, w, c) or (1, h, w, c)" if allow_2d else "(h, w, c) or (1, h, w, c)"
        raise ValueError(f"{name} must have shape {expected}, got shape {array.shape}")
    return array


def model_input(model, name="model"):
    """The model's one symbolic input (a KerasTensor); errors for unbuilt or multi-input models."""
    inputs = getattr(model, "inputs", None)
    if not inputs:
        raise ValueError(
            f"{name} must be a built model with an Input (a functional Model, or a Sequential started "
            f"with Input(shape=...)); got {model!r}"
        )
    if len(inputs) != 1:
        shapes = ", ".join(str(t.shape) for t in inputs)
        raise ValueError(f"{name} must take one input image, '{model.name}' takes {len(inputs)}: {shapes}")
    return inputs[0]


def model_device(model):
    """"cpu" or "cuda": where the model's weights live (a model without weights runs on the CPU)."""
    weights = model.weights
    return weights[0].device if weights else "cpu"


def model_batch(model, image, name="image"):
    """A Tensor (1, h, w, c) of the model's input dtype on the model's device, from one image.

    The image may be a numpy or CuPy array or a Tensor, of shape (h, w, c) or (1, h, w, c).
    """
    from ..autograd import Tensor, array_module

    input_tensor = model_input(model)
    data = image.data if isinstance(image, Tensor) else image
    if array_module(data) is np:
        data = np.asarray(data)
    if data.ndim == 3:
        data = data[None]
    if data.ndim != 4 or data.shape[0] != 1:
        raise ValueError(f"{name} must be one image of shape (h, w, c) or (1, h, w, c), got shape {tuple(data.shape)}")
    expected = input_tensor.shape
    if len(expected) != 4:
        raise ValueError(f"model '{model.name}' takes inputs of shape {expected}, not images (batch, h, w, c)")
    if expected[3] is not None and data.shape[3] != expected[3]:
        raise ValueError(
            f"{name} has {data.shape[3]} channel(s) (shape {tuple(data.shape)}), model '{model.name}' expects "
            f"{expected[3]} (input shape {expected})"
        )
    for axis, what in ((1, "height"), (2, "width")):
        if expected[axis] is not None and data.shape[axis] != expected[axis]:
            raise ValueError(
                f"{name} has {what} {data.shape[axis]} (shape {tuple(data.shape)}), model '{model.name}' "
                f"expects {expected[axis]} (input shape {expected})"
            )
    tensor = Tensor(data.astype(input_tensor.dtype, copy=False))
    device = model_device(model)
    return tensor if tensor.device == device else Tensor(tensor.to(device).data)


def default_rescale(model):
    """1.0 when the model scales pixels itself (a Rescaling layer before its first conv layer,
    as in the book's cats-vs-dogs and Xception models), 1/255 otherwise (the MNIST convnet is
    trained on pixels divided by 255)."""
    from ..layers import Conv2D, Conv2DTranspose, DepthwiseConv2D, Rescaling, SeparableConv2D

    for layer in model.layers:
        if isinstance(layer, Rescaling):
            return 1.0
        if isinstance(layer, (Conv2D, Conv2DTranspose, DepthwiseConv2D, SeparableConv2D)):
            break
    return 1.0 / 255


def load_image(path, model=None, color_mode=None, size=None, rescale=None):
    """An image file as a float32 array (h, w, c), in the model's colour mode and size.

    color_mode: "grayscale" (c=1), "rgb" (c=3) or "rgba" (c=4); by default the model's
    input channels decide. size: (height, width); by default the model's input size, or the
    file's own size when the model takes any size. Resizing is bilinear, as Keras'
    image_dataset_from_directory does. Pixels are 0..255 times `rescale`: by default
    `default_rescale(model)` (1.0 without a model).
    """
    from PIL import Image

    from ..data.image import _open_decoded

    modes = {"grayscale": "L", "rgb": "RGB", "rgba": "RGBA"}
    if model is not None:
        shape = model_input(model).shape
        if len(shape) != 4:
            raise ValueError(f"model '{model.name}' takes inputs of shape {shape}, not images (batch, h, w, c)")
        if color_mode is None:
            by_channels = {1: "grayscale", 3: "rgb", 4: "rgba"}
            if shape[3] not in by_channels:
                raise ValueError(
                    f"model '{model.name}' takes {shape[3]} input channels; load_image reads 1 (grayscale), "
                    "3 (rgb) or 4 (rgba)"
                )
            color_mode = by_channels[shape[3]]
        if size is None and shape[1] is not None and shape[2] is not None:
            size = (shape[1], shape[2])
        if rescale is None:
            rescale = default_rescale(model)
    color_mode = color_mode or "rgb"
    if color_mode not in modes:
        raise ValueError(f"color_mode must be one of {', '.join(map(repr, modes))}, got {color_mode!r}")
    if rescale is None:
        rescale = 1.0
    if os.path.isdir(path):
        raise IsADirectoryError(f"load_image: {path!r} is a directory, not an image file")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load_image: image file {path!r} does not exist")
    image = _open_decoded(path, "load_image").convert(modes[color_mode])  # names the file if it is no image
    if size is not None:
        height, width = _pair(size, "size")
        if image.size != (width, height):
            image = image.resize((width, height), Image.BILINEAR)
    array = np.asarray(image, dtype=np.float32)
    if array.ndim == 2:
        array = array[:, :, None]
    return array * np.float32(rescale)


def _pair(value, name):
    if isinstance(value, (int, np.integer)):
        pair = (value, value)
    else:
        pair = tuple(value) if isinstance(value, (tuple, list)) else ()
    if len(pair) != 2 or not all(isinstance(n, (int, np.integer)) and n > 0 for n in pair):
        raise ValueError(f"{name} must be a positive int or a pair (height, width) of them, got {value!r}")
    return int(pair[0]), int(pair[1])


def png_name(name):
    """A file name from a layer name: characters other than letters, digits, '.', '_' and '-' become '_'."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) + ".png"


def _as_pil(image):
    from PIL import Image

    if isinstance(image, Image.Image):
        return image
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise TypeError(f"write_png needs a uint8 array (or a PIL image), got dtype {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 2:
        return Image.fromarray(array, "L")
    if array.ndim == 3 and array.shape[2] in (3, 4):
        return Image.fromarray(array, "RGB" if array.shape[2] == 3 else "RGBA")
    raise ValueError(f"write_png needs an array (h, w), (h, w, 1), (h, w, 3) or (h, w, 4), got shape {array.shape}")


def tile_scale(height, width, tile_size):
    """The whole factor that brings a height x width tile to at least tile_size pixels on its
    longer side (1 for a tile already that large)."""
    return max(1, math.ceil(tile_size / max(height, width)))


def tile_picture(tiles, per_row, scale=1, gap=2, gap_value=255):
    """One uint8 picture of equally sized tiles (n, h, w) or (n, h, w, c), `per_row` to a row,
    each enlarged `scale` times by nearest neighbour (every pixel a scale x scale square), with
    `gap` pixels of gap_value between tiles and in the empty places after the last one:
    rows * h * scale + (rows - 1) * gap high and per_row * w * scale + (per_row - 1) * gap wide."""
    tiles = np.asarray(tiles)
    count, height, width = tiles.shape[:3]
    rows = math.ceil(count / per_row)
    tile_height, tile_width = height * scale, width * scale
    picture = np.full((rows * tile_height + (rows - 1) * gap, per_row * tile_width + (per_row - 1) * gap)
                      + tiles.shape[3:], gap_value, dtype=np.uint8)
    for index, tile in enumerate(tiles):
        row, column = divmod(index, per_row)
        top, left = row * (tile_height + gap), column * (tile_width + gap)
        picture[top:top + tile_height, left:left + tile_width] = np.repeat(np.repeat(tile, scale, 0), scale, 1)
    return picture


def enlarged(image, size=224):
    """A small picture enlarged by nearest neighbour by the largest whole factor that keeps its
    longer side within `size` pixels (a 28 x 28 digit becomes 224 x 224); larger ones as they are."""
    image = np.asarray(image)
    scale = max(1, size // max(image.shape[:2]))
    return np.repeat(np.repeat(image, scale, 0), scale, 1) if scale > 1 else image


def write_png(image, path):
    """Write a uint8 array or PIL image as a PNG at `path` (creating its folder), atomically."""
    image = _as_pil(image)
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with atomic_write(path, "write_png") as file:
        image.save(file, format="PNG")
    return path


def titled(image, title, background=255, color=0):
    """A PIL image: `title` (default font) on a strip above the uint8 array `image`.

    The canvas is as wide as the wider of the image and the text; the image sits at the
    left, under the strip.
    """
    from PIL import Image, ImageDraw, ImageFont

    picture = _as_pil(image)
    font = ImageFont.load_default()
    measure = ImageDraw.Draw(Image.new("L", (1, 1)))
    left, top, right, bottom = measure.textbbox((0, 0), title, font=font)
    strip = bottom + 6
    width = max(picture.width, right + 6)
    mode = "RGB" if picture.mode in ("RGB", "RGBA") else "L"
    fill = background if mode == "L" else (background,) * 3
    ink = color if mode == "L" else (color,) * 3
    canvas = Image.new(mode, (width, picture.height + strip), fill)
    ImageDraw.Draw(canvas).text((3, 3), title, fill=ink, font=font)
    canvas.paste(picture.convert(mode), (0, strip))
    return canvas
