"""Seeing what a convnet learned (Chollet, Deep Learning with Python, 2nd ed. 9.4, 1st ed. 5.4).

Every routine returns numpy arrays; given a `path` (or `out_dir`) it also writes PNGs.

    activations   activation_model, activation_grid, activation_grids: what each layer's
                  channels respond to in one image
    filters       filter_weights_grid (a conv kernel as pictures), filter_pattern and
                  filter_patterns_grid (gradient ascent in input space), deprocess_image
    gradcam       grad_cam (where the evidence for a class is), overlay_heatmap, resize_heatmap
    colormap      jet, computed here
    plots         plot_history: training and validation curves
    cli           visualize (all of the above for one model and image) and the command line
    images        loading an image for a model, atomic PNG writes
"""

from .activations import activation_grid, activation_grids, activation_model, default_activation_layer_names
from .cli import visualize
from .colormap import jet
from .filters import (deprocess_image, feature_extractor, filter_pattern, filter_patterns_grid,
                      filter_weights_grid)
from .gradcam import find_last_conv_layer, grad_cam, overlay_heatmap, resize_heatmap
from .images import load_image, write_png
from .plots import plot_history

__all__ = [
    "activation_model", "activation_grid", "activation_grids", "default_activation_layer_names",
    "filter_weights_grid", "feature_extractor", "filter_pattern", "deprocess_image", "filter_patterns_grid",
    "grad_cam", "overlay_heatmap", "resize_heatmap", "find_last_conv_layer", "jet", "plot_history", "visualize",
    "load_image", "write_png",
]
