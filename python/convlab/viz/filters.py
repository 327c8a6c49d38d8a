"""What conv filters look for (Chollet 2nd ed. 9.4.2, 1st ed. 5.4.2): their weights, and the
input pattern each responds to most.

filter_weights_grid: the kernel (kh, kw, cin, cout) of a conv layer, normalized over the
whole kernel to (w - min) / (max - min), each cell a kh x kw picture of one filter and one
input channel. The filters are laid out as the activation grids are, filters_per_row of
them to a row (8 by default; all of them when there are fewer), each filter taking cin
cells side by side, in input-channel order; cells are separated by 1-pixel white gaps
(value 1), and the empty places after the last filter are white too. With
p = min(filters_per_row, cout) filters per row and n_rows = ceil(cout / p), the grid is
(n_rows * (kh + 1) - 1) by (p * cin * (kw + 1) - 1). Its PNG shows each cell enlarged
`scale` times by nearest neighbour (16: a 3 x 3 kernel is 48 x 48 pixels), the cells of
one filter 2 pixels apart and the filters 6 pixels apart, on white.

filter_pattern: gradient ascent in input space. With A = the layer's output for image x,
the loss is the mean of A[:, 2:-2, 2:-2, filter_index] (the border is left out, where the
padding and the image edge dominate). From noise uniform in [0.4, 0.6], each step moves
the image along the gradient scaled to unit L2 norm (as tf.math.l2_normalize does, the
squared norm is floored at 1e-12, so a zero gradient gives no step):

    g = dloss/dx;  x += learning_rate * g / sqrt(max(sum(g * g), 1e-12))

deprocess_image makes the result viewable: subtract the mean, divide by the std, * 64,
+ 128, clip to uint8, and crop the border. The book crops 25 pixels of its 200-pixel
patterns; crop=None scales that: round(25 * min(h, w) / 200) pixels, never so many that
less than one pixel is left.

filter_patterns_grid stitches n patterns, ceil(sqrt(n)) per row (8 x 8 for the book's
64), with `margin` pixels of black between them: for cropped patterns of ch x cw and
n_rows x n_cols of them, the grid is n_rows * ch + (n_rows - 1) * margin high and
n_cols * cw + (n_cols - 1) * margin wide.
"""

import math

import numpy as np

from .. import utils
from ..autograd import GradientTape, Tensor
from ..layers import Conv2DTranspose, DepthwiseConv2D, SeparableConv2D
from ..models import Model
from .activations import _check_layer_names
from .images import _pair, model_batch, model_input, one_image, tile_picture, to_numpy, write_png

__all__ = ["filter_weights_grid", "feature_extractor", "gradient_ascent_step", "filter_pattern", "deprocess_image",
           "default_crop", "filter_patterns_grid"]

BOOK_PATTERN_SIZE = 200  # the book's img_width and img_height, used when a model takes any size


# --------------------------------------------------------------------------- weights


def _kernel_of(layer):
    """A conv layer's kernel as (kh, kw, cin, cout); an array of that shape is taken as it is."""
    from ..layers import Layer

    if isinstance(layer, Layer):
        if not layer.built:
            raise ValueError(f"filter_weights_grid: layer '{layer.name}' is not built yet, so it has no kernel")
        if isinstance(layer, SeparableConv2D):
            kernel = layer.depthwise_kernel.numpy()  # (kh, kw, cin, depth_multiplier)
        elif isinstance(layer, Conv2DTranspose):
            kernel = layer.kernel.numpy().transpose(0, 1, 3, 2)  # stored (kh, kw, cout, cin)
        elif isinstance(layer, DepthwiseConv2D) or hasattr(layer, "kernel"):
            kernel = layer.kernel.numpy()
        else:
            raise TypeError(
                f"filter_weights_grid: layer must be a conv layer (Conv2D, Conv2DTranspose, DepthwiseConv2D, "
                f"SeparableConv2D) or a kernel array, got {type(layer).__name__} '{layer.name}'"
            )
    else:
        kernel = to_numpy(layer, "layer")
    if kernel.ndim != 4:
        raise ValueError(
            f"filter_weights_grid: the kernel must have shape (kh, kw, cin, cout), got shape {kernel.shape}"
        )
    return kernel


def filter_weights_grid(layer, path=None, scale=16, filters_per_row=8):
    """The layer's kernel as a float grid in [0, 1] (see the module doc); with `path`, a PNG
    of its cells enlarged `scale` times (nearest neighbour, so each weight is a visible
    square) with separators between them."""
    for name, value in (("scale", scale), ("filters_per_row", filters_per_row)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"filter_weights_grid: {name} must be a positive int, got {value!r}")
    kernel = _kernel_of(layer).astype(np.float64)
    if not np.isfinite(kernel).all():
        raise ValueError("filter_weights_grid: the kernel contains NaN or infinity")
    kh, kw, cin, cout = kernel.shape
    low, high = kernel.min(), kernel.max()
    normalized = (kernel - low) / (high - low) if high > low else np.zeros_like(kernel)
    cells = normalized.transpose(3, 2, 0, 1).reshape(cout * cin, kh, kw)  # filter by filter, channels in order
    per_row = min(filters_per_row, cout) * cin
    n_rows = math.ceil(cout * cin / per_row)
    grid = np.ones((n_rows * (kh + 1) - 1, per_row * (kw + 1) - 1))
    for index, cell in enumerate(cells):
        row, column = divmod(index, per_row)
        grid[row * (kh + 1):row * (kh + 1) + kh, column * (kw + 1):column * (kw + 1) + kw] = cell
    if path is not None:
        pixels = np.repeat(np.repeat(np.round(cells * 255).astype(np.uint8), scale, 1), scale, 2)
        filters = np.stack([tile_picture(pixels[f * cin:(f + 1) * cin], cin, gap=2) for f in range(cout)])
        write_png(tile_picture(filters, min(filters_per_row, cout), gap=6), path)
    return grid


# --------------------------------------------------------------------------- patterns


def feature_extractor(model, layer_name):
    """Model(model.inputs, layer.output) for a layer with a 4-D (batch, h, w, channels) output."""
    model_input(model)
    (layer_name,) = _check_layer_names(model, [layer_name], "layer_name")
    output = model.get_layer(layer_name).output
    if isinstance(output, list) or len(output.shape) != 4:
        shape = [t.shape for t in output] if isinstance(output, list) else output.shape
        raise ValueError(
            f"layer_name: layer '{layer_name}' has output shape {shape}; filter patterns need a layer with "
            "a 4-D output (batch, height, width, channels)"
        )
    return Model(model.inputs, output, name=f"{model.name}_{layer_name}_features")


def _check_filter_index(extractor, filter_index, layer_name):
    channels = extractor.outputs[0].shape[-1]
    if not isinstance(filter_index, (int, np.integer)) or isinstance(filter_index, bool) \
            or not 0 <= filter_index < channels:
        raise ValueError(
            f"filter_index must be an int in [0, {channels}) for layer '{layer_name}', got {filter_index!r}"
        )
    return int(filter_index)


def _pattern_shape(model, size):
    """(h, w, c) of the images gradient ascent works on: the model's input size, or `size`."""
    shape = model_input(model).shape
    if len(shape) != 4 or shape[3] is None:
        raise ValueError(f"model '{model.name}' takes inputs of shape {shape}, not images (batch, h, w, c)")
    if size is None:
        height = shape[1] if shape[1] is not None else BOOK_PATTERN_SIZE
        width = shape[2] if shape[2] is not None else BOOK_PATTERN_SIZE
        return height, width, shape[3]
    height, width = _pair(size, "size")
    for axis, given, what in ((1, height, "height"), (2, width, "width")):
        if shape[axis] is not None and shape[axis] != given:
            raise ValueError(
                f"size={size!r} asks for {what} {given}, but model '{model.name}' only takes inputs of shape "
                f"{shape}; leave size=None or use a model built with Input(shape=(None, None, {shape[3]}))"
            )
    return height, width, shape[3]


def gradient_ascent_step(extractor, image, filter_index, learning_rate):
    """One step x + learning_rate * g / ||g||_2 on a (1, h, w, c) array (numpy or CuPy).

    Returns (the new image array, the loss before the step as a float).
    """
    x = Tensor(image)
    with GradientTape() as tape:
        tape.watch(x)
        activation = extractor(x)
        if activation.shape[1] <= 4 or activation.shape[2] <= 4:
            raise ValueError(
                f"the layer's output is {activation.shape[1]}x{activation.shape[2]} for a "
                f"{image.shape[1]}x{image.shape[2]} input: leaving out 2 border pixels on each side leaves "
                "nothing; use a larger size"
            )
        loss = activation[:, 2:-2, 2:-2, filter_index].mean()
    gradient = tape.gradient(loss, x)
    if gradient is None:  # the loss does not depend on the image (cannot happen for a conv layer)
        return image, float(loss.item())
    g = gradient.data
    xp = x.xp
    norm = xp.sqrt(xp.maximum(xp.sum(g * g), 1e-12))
    return image + (learning_rate * g / norm).astype(image.dtype), float(loss.item())


def _ascend(extractor, model, layer_name, filter_index, size, iterations, learning_rate, seed, initial_image):
    filter_index = _check_filter_index(extractor, filter_index, layer_name)
    if not isinstance(iterations, (int, np.integer)) or isinstance(iterations, bool) or iterations < 0:
        raise ValueError(f"iterations must be a non-negative int, got {iterations!r}")
    height, width, channels = _pattern_shape(model, size)
    if initial_image is None:
        image = utils.generator(seed).uniform(0.4, 0.6, size=(1, height, width, channels))
    else:
        image = one_image(initial_image, "initial_image")
        if size is not None and image.shape[:2] != (height, width):
            raise ValueError(f"initial_image has shape {image.shape}, which disagrees with size={size!r}")
    image = model_batch(model, image, "initial_image").data.copy()
    for _ in range(iterations):
        image, _ = gradient_ascent_step(extractor, image, filter_index, learning_rate)
    return to_numpy(image)[0]


def filter_pattern(model, layer_name, filter_index, size=None, iterations=30, learning_rate=10.0, seed=None,
                   initial_image=None):
    """The input that gradient ascent finds for one filter: a float array (h, w, c), not deprocessed.

    size: an int or (height, width) for a model that takes any input size (default: the
    model's input size; 200 x 200, the book's size, where the model leaves it open).
    seed: None (convlab's global generator, see convlab.utils.set_seed), an int or a numpy
    Generator, for the starting noise. initial_image: start from this image instead.
    """
    extractor = feature_extractor(model, layer_name)
    return _ascend(extractor, model, layer_name, filter_index, size, iterations, learning_rate, seed, initial_image)


def default_crop(height, width):
    """The book's 25 pixels per 200, scaled to the image and capped to leave at least one pixel."""
    side = min(height, width)
    return max(0, min(round(25 * side / 200), (side - 1) // 2))


def deprocess_image(image, crop=None):
    """A float image as viewable uint8: (x - mean) / std * 64 + 128, clipped, border cropped.

    image: (h, w, c), (1, h, w, c) or (h, w); one mean and one std over all of it (a constant
    image has std 0 and is not divided). crop: pixels removed on each side; None for
    default_crop(h, w).
    """
    array = one_image(image, "image", allow_2d=True).astype(np.float64)
    if not np.isfinite(array).all():
        raise ValueError("deprocess_image: image contains NaN or infinity")
    height, width = array.shape[:2]
    if crop is None:
        crop = default_crop(height, width)
    elif not isinstance(crop, (int, np.integer)) or isinstance(crop, bool) or crop < 0 \
            or 2 * crop >= min(height, width):
        raise ValueError(
            f"deprocess_image: crop must be an int >= 0 leaving at least one pixel of the {height}x{width} image "
            f"(at most {(min(height, width) - 1) // 2}), got {crop!r}"
        )
    array = array - array.mean()
    std = array.std()
    if std > 0:
        array = array / std
    array = np.clip(array * 64 + 128, 0, 255).astype(np.uint8)
    return array[crop:height - crop, crop:width - crop]


def filter_patterns_grid(model, layer_name, n=64, size=None, margin=5, path=None, iterations=30, learning_rate=10.0,
                         seed=None, crop=None, filter_indices=None):
    """Deprocessed patterns of filters 0..n-1 (or of filter_indices) stitched into one uint8 grid.

    ceil(sqrt(n)) patterns per row, `margin` black pixels between them (see the module doc
    for the size). Grayscale models (c = 1) give a 2-D grid, others (H, W, c). seed seeds
    one generator that draws every pattern's starting noise in turn.
    """
    extractor = feature_extractor(model, layer_name)
    channels = extractor.outputs[0].shape[-1]
    if filter_indices is None:
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or not 1 <= n <= channels:
            raise ValueError(
                f"n must be an int in [1, {channels}] for layer '{layer_name}' ({channels} filters), got {n!r}"
            )
        filter_indices = range(n)
    filter_indices = list(filter_indices)
    if not filter_indices:
        raise ValueError("filter_indices is empty: give at least one filter index")
    if not isinstance(margin, (int, np.integer)) or isinstance(margin, bool) or margin < 0:
        raise ValueError(f"margin must be an int >= 0, got {margin!r}")
    generator = utils.generator(seed)
    patterns = [
        deprocess_image(_ascend(extractor, model, layer_name, index, size, iterations, learning_rate, generator,
                                None), crop)
        for index in filter_indices
    ]
    count = len(patterns)
    n_columns = math.ceil(math.sqrt(count))
    n_rows = math.ceil(count / n_columns)
    cropped_height, cropped_width, depth = patterns[0].shape
    grid = np.zeros((n_rows * cropped_height + (n_rows - 1) * margin,
                     n_columns * cropped_width + (n_columns - 1) * margin, depth), dtype=np.uint8)
    for index, pattern in enumerate(patterns):
        row, column = divmod(index, n_columns)
        top, left = row * (cropped_height + margin), column * (cropped_width + margin)
        grid[top:top + cropped_height, left:left + cropped_width] = pattern
    if depth == 1:
        grid = grid[:, :, 0]
    if path is not None:
        write_png(grid, path)
    return grid
