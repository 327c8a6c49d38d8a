"""Every interpretation picture of one model and one image, written into a folder; and the
command line `python -m convlab visualize MODEL_FILE IMAGE --out DIR` built on it.

visualize writes
    activations/<layer>.png           activation grid of each conv and pooling layer
    filter_weights_<layer>.png        the first conv layer's kernel
    filter_patterns_<layer>.png       gradient-ascent patterns of one conv layer's filters
    grad_cam_<layer>.png              the Grad-CAM heatmap over the image
(Grad-CAM only for models with a (batch, classes) output: a per-pixel model has no one
class score.)
"""

import os
import warnings

import numpy as np

from .._command_line import ArgumentParser
from .activations import CONV_LAYER_TYPES, activation_grids, activation_model
from .filters import feature_extractor, filter_patterns_grid, filter_weights_grid
from .gradcam import find_last_conv_layer, grad_cam, overlay_heatmap
from .images import default_rescale, load_image, model_input, one_image, png_name

__all__ = ["visualize", "main"]


def _first_conv_layer(model):
    for layer in model.layers:
        if isinstance(layer, CONV_LAYER_TYPES):
            return layer
    return None


def _prepare_image(model, image, rescale):
    """(the model's input, the picture the heatmap is drawn over, in 0..255)."""
    if isinstance(image, (str, os.PathLike)):
        pixels = load_image(os.fspath(image), model, rescale=1.0)  # 0..255, the model's mode and size

        scale = default_rescale(model) if rescale is None else rescale
        return pixels * np.float32(scale), pixels
    array = one_image(image, "image")
    if rescale is not None:
        raise ValueError("rescale applies to an image file; an array image is given to the model as it is")
    # An array is taken as the model's input; shown in 0..255 (values up to 1 are taken as 0..1 pixels).
    shown = array.astype(np.float64)
    if shown.size and np.nanmax(shown) <= 1.0:
        shown = shown * 255
    return array, shown


def visualize(model, image, out_dir, layer_name=None, last_conv_layer_name=None, n_patterns=16,
              activation_layer_names=None, size=None, iterations=30, learning_rate=10.0, seed=0, class_index=None,
              images_per_row=16, rescale=None, score="logit"):
    """Write the pictures listed in the module doc into out_dir; return their paths.

    image: a file path (read in the model's colour mode and size, pixels times `rescale`,
    by default 1 if the model has its own Rescaling layer and 1/255 if not, see
    images.default_rescale) or an array (h, w, c) / (1, h, w, c) given to the model as it is.
    layer_name: the conv layer whose filter patterns are drawn (default: the first one).
    last_conv_layer_name: Grad-CAM's layer (default: the last Conv2D/SeparableConv2D).
    score: Grad-CAM's class score, "logit" (before the softmax) or "output" (see grad_cam).
    size: the patterns' input size, for a model that takes any size (default: the image's).
    """
    model_input(model)
    model_image, shown = _prepare_image(model, image, rescale)
    os.makedirs(out_dir, exist_ok=True)
    written = []

    activations_dir = os.path.join(out_dir, "activations")
    names = [t.layer.name for t in activation_model(model, activation_layer_names).outputs]
    activation_grids(model, model_image, names, out_dir=activations_dir, images_per_row=images_per_row)
    written += [os.path.join(activations_dir, png_name(name)) for name in names]

    first_conv = _first_conv_layer(model)
    if first_conv is not None:
        path = os.path.join(out_dir, "filter_weights_" + png_name(first_conv.name))
        filter_weights_grid(first_conv, path=path)
        written.append(path)

    pattern_layer = layer_name or (first_conv.name if first_conv is not None else None)
    if pattern_layer is not None:
        channels = feature_extractor(model, pattern_layer).outputs[0].shape[-1]
        input_shape = model_input(model).shape
        if size is None and (input_shape[1] is None or input_shape[2] is None):
            size = tuple(one_image(model_image).shape[:2])
        path = os.path.join(out_dir, "filter_patterns_" + png_name(pattern_layer))
        filter_patterns_grid(model, pattern_layer, n=min(n_patterns, channels), size=size, path=path,
                             iterations=iterations, learning_rate=learning_rate, seed=seed)
        written.append(path)

    if len(model.outputs) == 1 and len(model.outputs[0].shape) == 2:
        conv_name = last_conv_layer_name or find_last_conv_layer(model)
        heatmap = grad_cam(model, model_image, conv_name, class_index=class_index, score=score)
        path = os.path.join(out_dir, "grad_cam_" + png_name(conv_name))
        overlay_heatmap(shown, heatmap, path=path)
        written.append(path)
    elif last_conv_layer_name is not None or class_index is not None:
        raise ValueError(
            f"Grad-CAM needs a model with one (batch, classes) output; '{model.name}' outputs "
            f"{', '.join(str(t.shape) for t in model.outputs)}"
        )
    else:
        warnings.warn(f"visualize: no Grad-CAM for model '{model.name}': its output is not (batch, classes)")
    return written


def build_parser(prog="python -m convlab visualize"):
    parser = ArgumentParser(prog=prog, description="Write activation grids, filter weights and patterns, "
                                                            "and a Grad-CAM overlay of a saved model on an image.")
    parser.add_argument("model_file", help="a model saved by convlab (Model.save)")
    parser.add_argument("image", help="an image file (read in the model's colour mode and size)")
    parser.add_argument("--out", required=True, help="folder for the PNG files")
    parser.add_argument("--layer", default=None, help="conv layer for filter patterns (default: the first)")
    parser.add_argument("--last-conv-layer", default=None, help="layer for Grad-CAM (default: the last conv)")
    parser.add_argument("--patterns", type=int, default=16, help="number of filter patterns (default 16)")
    parser.add_argument("--iterations", type=int, default=30, help="gradient-ascent steps per pattern (default 30)")
    parser.add_argument("--class-index", type=int, default=None, help="Grad-CAM class (default: the top class)")
    parser.add_argument("--score", choices=["logit", "output"], default="logit",
                        help="Grad-CAM's class score: before the softmax (logit, default) or the output")
    parser.add_argument("--rescale", type=float, default=None,
                        help="pixel scale (default 1 if the model has a Rescaling layer, else 1/255)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the patterns' starting noise")
    return parser


def main(argv=None, prog="python -m convlab visualize"):
    """Parse the visualize command line, load the model, write the PNGs; print their paths."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.patterns < 1:
        parser.error(f"--patterns must be >= 1, got {args.patterns}")
    if args.iterations < 0:
        parser.error(f"--iterations must be >= 0, got {args.iterations}")
    if args.rescale is not None and not (np.isfinite(args.rescale) and args.rescale > 0):
        parser.error(f"--rescale must be a finite number > 0, got {args.rescale}")
    from .. import models

    model = models.load_model(args.model_file, compile=False)
    for path in visualize(model, args.image, args.out, layer_name=args.layer,
                          last_conv_layer_name=args.last_conv_layer, n_patterns=args.patterns,
                          iterations=args.iterations, seed=args.seed, class_index=args.class_index,
                          rescale=args.rescale, score=args.score):
        print(path)
    return 0
