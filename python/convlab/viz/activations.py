"""Intermediate activations (Chollet 2nd ed. 9.4.1, 1st ed. 5.4.1).

A model whose outputs are the outputs of some of another model's layers shares that
model's layers and weights:

    activation_model(model)     Model(model.inputs, [conv and pooling layers' outputs])

Each channel of a layer's activation of one image is a small grayscale picture. The
grid puts them images_per_row to a row, one pixel of black between them, each channel
made visible the book's way:

    if the channel is not all zero:  x = (x - mean(x)) / std(x) * 64 + 128
    pixel = uint8(clip(x, 0, 255))

For a (h, w, c) activation the grid has n_rows = ceil(c / images_per_row) rows and is
((h + 1) * n_rows - 1) by (images_per_row * (w + 1) - 1) pixels; channels that are all
zero (dead ReLUs) stay black. A channel that is constant but not zero has std 0: it is
not divided (the book would divide by zero) and shows as mid-gray 128.

That grid is what activation_grid returns. The PNG it writes is made to be read without
zooming: each channel enlarged by nearest neighbour, by the whole factor that makes its
longer side at least png_tile_size pixels (64: a 26 x 26 map becomes 78 x 78, a 3 x 3 one
66 x 66), with 2-pixel white separators between channels and white in the empty places
(so a dead, black channel still shows as a tile), images_per_row to a row (or all of
them, when there are fewer), under a strip titled with the layer name.
"""

import math
import os

import numpy as np

from ..autograd import no_grad
from ..layers import (AveragePooling2D, Conv2D, Conv2DTranspose, DepthwiseConv2D, MaxPooling2D,
                      SeparableConv2D)
from ..models import Model
from .images import model_batch, model_input, png_name, tile_picture, tile_scale, titled, to_numpy, write_png

__all__ = ["CONV_LAYER_TYPES", "POOLING_LAYER_TYPES", "default_activation_layer_names", "activation_model",
           "activation_grid", "activation_grids"]

CONV_LAYER_TYPES = (Conv2D, SeparableConv2D, DepthwiseConv2D, Conv2DTranspose)
POOLING_LAYER_TYPES = (MaxPooling2D, AveragePooling2D)


def default_activation_layer_names(model):
    """The names of the model's conv and (2-D, not global) pooling layers, in model order."""
    return [layer.name for layer in model.layers if isinstance(layer, CONV_LAYER_TYPES + POOLING_LAYER_TYPES)]


def _check_layer_names(model, layer_names, argument="layer_names"):
    if isinstance(layer_names, str):
        layer_names = [layer_names]
    try:
        layer_names = list(layer_names)
    except TypeError:
        raise TypeError(f"{argument} must be a layer name or a list of them, got {layer_names!r}") from None
    valid = [layer.name for layer in model.layers]
    unknown = [name for name in layer_names if name not in valid]
    if unknown:
        raise ValueError(
            f"{argument}: model '{model.name}' has no layer named {', '.join(map(repr, unknown))}; "
            f"valid layer names: {', '.join(valid)}"
        )
    return layer_names


def activation_model(model, layer_names=None):
    """A Model from model.inputs to the outputs of `layer_names`, in that order (a list).

    By default every Conv2D, SeparableConv2D, DepthwiseConv2D, Conv2DTranspose,
    MaxPooling2D and AveragePooling2D layer of the model, in model order.
    """
    model_input(model)
    if layer_names is None:
        layer_names = default_activation_layer_names(model)
        if not layer_names:
            names = ", ".join(f"{layer.name} ({type(layer).__name__})" for layer in model.layers)
            raise ValueError(
                f"model '{model.name}' has no conv or pooling layer to show; pass layer_names from its "
                f"layers: {names}"
            )
    else:
        layer_names = _check_layer_names(model, layer_names)
        if not layer_names:
            raise ValueError("layer_names is empty: give at least one layer name (or None for the defaults)")
    outputs = [model.get_layer(name).output for name in layer_names]
    return Model(model.inputs, outputs, name=f"{model.name}_activations")


def activation_grid(activations, images_per_row=16, layer_name=None, path=None, png_tile_size=64):
    """The book's grid of one layer's channels for ONE image, as a uint8 array (see the module doc).

    activations: (1, h, w, c) or (h, w, c) (array, CuPy array or Tensor). With `path`, also
    writes a PNG: the channels enlarged to at least png_tile_size pixels, with separators,
    under a strip titled with layer_name (see the module doc; the returned array is the
    book's grid, whatever png_tile_size).
    """
    where = f"activation_grid (layer {layer_name!r})" if layer_name else "activation_grid"
    if not isinstance(images_per_row, (int, np.integer)) or isinstance(images_per_row, bool) or images_per_row < 1:
        raise ValueError(f"{where}: images_per_row must be a positive int, got {images_per_row!r}")
    if not isinstance(png_tile_size, (int, np.integer)) or isinstance(png_tile_size, bool) or png_tile_size < 1:
        raise ValueError(f"{where}: png_tile_size must be a positive int, got {png_tile_size!r}")
    array = to_numpy(activations, "activations")
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 3:
        raise ValueError(
            f"{where}: activations must be one image's activation, shape (1, h, w, c) or (h, w, c), "
            f"got shape {array.shape}"
        )
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise ValueError(f"{where}: activations contain NaN or infinity")
    height, width, channels = array.shape
    n_rows = math.ceil(channels / images_per_row)
    cells = np.zeros((channels, height, width), dtype=np.uint8)
    grid = np.zeros(((height + 1) * n_rows - 1, images_per_row * (width + 1) - 1), dtype=np.uint8)
    for index in range(channels):
        channel = array[:, :, index]
        if np.any(channel != 0):
            channel = channel - channel.mean()
            std = channel.std()
            if std > 0:
                channel = channel / std
            channel = channel * 64 + 128
        cells[index] = np.clip(channel, 0, 255).astype(np.uint8)
        row, column = divmod(index, images_per_row)
        top, left = row * (height + 1), column * (width + 1)
        grid[top:top + height, left:left + width] = cells[index]
    if path is not None:
        picture = tile_picture(cells, min(images_per_row, channels), tile_scale(height, width, png_tile_size))
        write_png(titled(picture, layer_name) if layer_name else picture, path)
    return grid


def activation_grids(model, image, layer_names=None, out_dir=None, images_per_row=16, png_tile_size=64):
    """{layer name: activation_grid} for one image; with out_dir, one PNG per layer, named
    after the layer (`<layer name>.png`) and titled with it."""
    extractor = activation_model(model, layer_names)
    names = [tensor.layer.name for tensor in extractor.outputs]
    with no_grad():
        outputs = extractor(model_batch(model, image))
    grids = {}
    for name, output in zip(names, outputs):
        path = None if out_dir is None else os.path.join(out_dir, png_name(name))
        grids[name] = activation_grid(output, images_per_row, layer_name=name, path=path, png_tile_size=png_tile_size)
    return grids
