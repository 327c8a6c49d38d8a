"""Grad-CAM: where in the image the evidence for a class is (Chollet 2nd ed. 9.4.3, 1st ed. 5.4.3).

With A the last conv layer's output for the image (1, h, w, c) and y_c the score of class
c (the top class unless told otherwise), by default the score before the final softmax or
sigmoid, as Selvaraju et al. define it (score="output": the probability, as in the book):

    g = dy_c / dA                              (1, h, w, c)
    weights[k] = mean of g[..., k] over batch, rows and columns
    heatmap = relu(mean over k of A[0, :, :, k] * weights[k])
    heatmap /= max(heatmap)                    (an all-zero heatmap stays zero)

A is an intermediate tensor, so its gradient comes from one tape over the whole model:
a model with two outputs, [A, predictions], runs on the image with the image watched, which
records every operation after it, those that make the predictions out of A included; the
tape then differentiates y_c with respect to A (and only the part of the graph between
them is walked backward).

overlay_heatmap paints the heatmap over the image as the book does: uint8(255 * heatmap)
through the jet colormap, resized to the image (bilinear), image + alpha * colours, then
the sum rescaled to 0..255 by its own min and max. resize_heatmap gives the heatmap itself
at the image's size, by the same bilinear rule, to ask where in the image its peak lies.
"""

import numpy as np

from ..autograd import GradientTape
from ..layers import Conv2D, SeparableConv2D
from ..models import Model
from .activations import _check_layer_names
from .colormap import jet
from .images import enlarged, model_batch, model_input, one_image, to_numpy, write_png

__all__ = ["find_last_conv_layer", "grad_cam", "overlay_heatmap", "resize_heatmap"]


def find_last_conv_layer(model):
    """The name of the model's last Conv2D or SeparableConv2D layer with a 4-D output,
    passing over the 1x1 convolutions of shortcuts.

    In residual nets a shortcut's strided 1x1 projection is built after the block's main
    path and goes straight into the Add that joins them, so taken literally "the last conv
    layer" would be that side branch; the features Grad-CAM wants are the main path's. A 1x1
    conv on the main path (EfficientNet's and MobileNet's 1x1 head conv, whose 3x3 and 5x5
    convs are all depthwise) is a fine choice, and is kept.
    """
    from ..layers.merging import Add

    candidates = [layer for layer in model.layers
                  if isinstance(layer, (Conv2D, SeparableConv2D)) and not isinstance(layer.output, list)
                  and len(layer.output.shape) == 4]
    readers = {}  # id(tensor) -> the layers that read it
    for node in getattr(model, "_nodes", []):
        for tensor in node.input_tensors:
            readers.setdefault(id(tensor), []).append(node.layer)

    def is_shortcut(layer):
        return tuple(layer.kernel_size) == (1, 1) and any(
            isinstance(reader, Add) for reader in readers.get(id(layer.output), []))

    for layer in reversed(candidates):
        if not is_shortcut(layer):
            return layer.name
    if candidates:
        return candidates[-1].name
    names = ", ".join(f"{layer.name} ({type(layer).__name__})" for layer in model.layers)
    raise ValueError(f"model '{model.name}' has no Conv2D or SeparableConv2D layer for Grad-CAM; its layers: {names}")


def grad_cam(model, image, last_conv_layer_name, class_index=None, score="logit"):
    """The Grad-CAM heatmap (h, w) in [0, 1] of one image for one class (see the module doc).

    image: (h, w, c) or (1, h, w, c), numpy or CuPy array or Tensor (moved to the model's
    device). The model's output must be (batch, classes); class_index defaults to the
    argmax of the prediction. A single sigmoid unit (output (1, 1)) has the one class 0.

    score: "logit" (default) differentiates the class score before the final softmax or
    sigmoid, as Selvaraju et al. define Grad-CAM; "output" differentiates the model's output
    itself, the probability, as the book's listing does. A confident prediction saturates the
    probability: its gradient then shrinks toward zero and mostly says what tells the class
    apart from the runner-up, so the heatmap drifts from the evidence for the class itself.
    A model whose output is not a softmax or sigmoid has only its output as the score.
    """
    if score not in ("logit", "output"):
        raise ValueError(f"score must be 'logit' (the class score before the softmax) or 'output' "
                         f"(the model's output), got {score!r}")
    inputs = model_input(model)
    (last_conv_layer_name,) = _check_layer_names(model, [last_conv_layer_name], "last_conv_layer_name")
    conv_output = model.get_layer(last_conv_layer_name).output
    if isinstance(conv_output, list) or len(conv_output.shape) != 4:
        raise ValueError(
            f"last_conv_layer_name: layer '{last_conv_layer_name}' has output shape "
            f"{getattr(conv_output, 'shape', None)}, Grad-CAM needs a 4-D (batch, h, w, channels) output"
        )
    if len(model.outputs) != 1 or len(model.outputs[0].shape) != 2:
        shapes = ", ".join(str(t.shape) for t in model.outputs)
        raise ValueError(
            f"grad_cam needs a model with one output of shape (batch, classes); '{model.name}' outputs {shapes}"
        )
    grad_model = Model([inputs], [conv_output, model.outputs[0]], name=f"{model.name}_grad_cam")
    x = model_batch(model, image)
    with GradientTape() as tape:
        tape.watch(x)  # records everything computed from the image, the head after A included
        activation, predictions = grad_model(x)
        n_classes = predictions.shape[1]
        if class_index is None:
            class_index = int(np.argmax(predictions.numpy()[0]))
        elif not isinstance(class_index, (int, np.integer)) or isinstance(class_index, bool) \
                or not 0 <= class_index < n_classes:
            raise ValueError(f"class_index must be an int in [0, {n_classes}) for this model, got {class_index!r}")
        scores = getattr(predictions, "_logits", None) if score == "logit" else None
        if scores is None or scores.shape != predictions.shape:
            scores = predictions
        class_score = scores[:, int(class_index)]
    gradient = tape.gradient(class_score, activation)
    a = activation.numpy().astype(np.float64)
    g = np.zeros_like(a) if gradient is None else gradient.numpy().astype(np.float64)
    weights = g.mean(axis=(0, 1, 2))
    heatmap = np.maximum((a[0] * weights).mean(axis=-1), 0.0)
    peak = heatmap.max()
    return heatmap / peak if peak > 0 else heatmap


def _bilinear_taps(n_in, n_out):
    """For each of n_out output positions: the two input indices and the second's weight.

    Pixel centres are aligned (output centre j + 0.5 sits at input coordinate
    (j + 0.5) * n_in / n_out), and positions beyond the outermost input centres take the
    edge value: the rule of PIL's bilinear resize when it enlarges.
    """
    source = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    low = np.floor(source).astype(np.int64)
    high = np.minimum(low + 1, n_in - 1)
    return low, high, source - low


def resize_heatmap(heatmap, size):
    """The heatmap (h, w) at size (height, width) by bilinear interpolation, float64.

    The same geometry as the colours of overlay_heatmap, so the argmax of the result is
    where the overlay is hottest. Only enlarges: a smaller size would skip cells, and is
    refused.
    """
    levels = to_numpy(heatmap, "heatmap").astype(np.float64)
    if levels.ndim != 2:
        raise ValueError(f"heatmap must be 2-D (h, w), got shape {levels.shape}")
    if (not isinstance(size, (tuple, list)) or len(size) != 2
            or not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) for n in size)
            or size[0] < levels.shape[0] or size[1] < levels.shape[1]):
        raise ValueError(f"size must be (height, width) ints at least the heatmap's {levels.shape}, got {size!r}")
    rows_low, rows_high, rows_t = _bilinear_taps(levels.shape[0], int(size[0]))
    cols_low, cols_high, cols_t = _bilinear_taps(levels.shape[1], int(size[1]))
    rows = levels[rows_low] * (1 - rows_t)[:, None] + levels[rows_high] * rows_t[:, None]
    return rows[:, cols_low] * (1 - cols_t) + rows[:, cols_high] * cols_t


def _rgb_image(image):
    array = one_image(image, "image", allow_2d=True).astype(np.float64)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    elif array.shape[2] == 4:
        array = array[:, :, :3]
    elif array.shape[2] != 3:
        raise ValueError(f"image must be grayscale (1 channel), RGB (3) or RGBA (4), got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError("image contains NaN or infinity")
    return array


def overlay_heatmap(image, heatmap, alpha=0.4, colormap="jet", path=None, png_size=224, bgr=False):
    """The heatmap in colour over the image, uint8 RGB of the image's size (see the module doc).

    image: (h, w), (h, w, 1|3|4) or (1, h, w, c), pixel values as the book has them (0..255);
    grayscale is repeated into RGB. heatmap: (h', w') in [0, 1]. colormap: "jet" or a
    function from uint8 indices to RGB in [0, 1]. With `path`, also writes the overlay as a
    PNG, a small one enlarged by nearest neighbour by the largest whole factor that keeps
    its longer side within png_size pixels (a 28 x 28 digit: 8 times, 224 x 224); the
    returned array keeps the image's size.
    bgr=True: the image is in BGR order, as cv2.imread returns it (a uint8 (h, w, 3) array);
    the returned overlay is BGR too, ready for cv2.imwrite, and the PNG at `path` gets the
    right colours.
    """
    if not isinstance(png_size, (int, np.integer)) or isinstance(png_size, bool) or png_size < 1:
        raise ValueError(f"overlay_heatmap: png_size must be a positive int, got {png_size!r}")
    if not isinstance(bgr, (bool, np.bool_)):
        raise ValueError(f"overlay_heatmap: bgr must be True or False, got {bgr!r}")
    from PIL import Image

    picture = _rgb_image(image)
    if bgr:
        picture = picture[:, :, ::-1]
    levels = to_numpy(heatmap, "heatmap").astype(np.float64)
    if levels.ndim != 2:
        raise ValueError(f"heatmap must be 2-D (h, w), got shape {levels.shape}")
    if not (np.isfinite(levels).all() and levels.min() >= 0.0 and levels.max() <= 1.0):
        raise ValueError(
            f"heatmap values must lie in [0, 1] (grad_cam's output), got values in [{np.nanmin(levels)}, "
            f"{np.nanmax(levels)}]"
        )
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.number)) or not np.isfinite(alpha):
        raise ValueError(f"alpha must be a finite number, got {alpha!r}")
    if colormap == "jet":
        colormap = jet
    elif not callable(colormap):
        raise ValueError(f"colormap must be 'jet' or a function from uint8 indices to RGB, got {colormap!r}")
    colours = np.asarray(colormap(np.uint8(255 * levels)), dtype=np.float64)
    if colours.shape != levels.shape + (3,):
        raise ValueError(f"colormap returned shape {colours.shape}, expected {levels.shape + (3,)}")
    coloured = Image.fromarray(np.round(np.clip(colours, 0, 1) * 255).astype(np.uint8), "RGB")
    height, width = picture.shape[:2]
    coloured = np.asarray(coloured.resize((width, height), Image.BILINEAR), dtype=np.float64)
    superimposed = picture + alpha * coloured
    superimposed -= superimposed.min()
    top = superimposed.max()
    if top > 0:
        superimposed /= top
    overlay = (superimposed * 255).astype(np.uint8)
    if path is not None:
        write_png(enlarged(overlay, png_size), path)
    return np.ascontiguousarray(overlay[:, :, ::-1]) if bgr else overlay
