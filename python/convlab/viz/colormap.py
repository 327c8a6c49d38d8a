"""The jet colormap, computed here (no matplotlib needed).

Each of red, green and blue is a piecewise-linear function of x in [0, 1], given by its
breakpoints (x, value), the published segments of the classic jet map:

    red    (0, 0) (0.35, 0) (0.66, 1) (0.89, 1) (1, 0.5)
    green  (0, 0) (0.125, 0) (0.375, 1) (0.64, 1) (0.91, 0) (1, 0)
    blue   (0, 0.5) (0.11, 1) (0.34, 1) (0.65, 0) (1, 0)

so 0 is dark blue (0, 0, 0.5), 1 dark red (0.5, 0, 0). Integers 0..255 are the entries of
a 256-colour table, entry i being the colour at x = i / 255: the table matplotlib's
`colormaps["jet"](np.arange(256))` gives, and what Grad-CAM overlays index with
uint8(255 * heatmap). Floats are interpolated exactly (matplotlib would first round them
down to one of its 256 entries).
"""

import numpy as np

from .images import to_numpy

__all__ = ["JET_SEGMENTS", "jet"]

JET_SEGMENTS = {
    "red": ((0.0, 0.0), (0.35, 0.0), (0.66, 1.0), (0.89, 1.0), (1.0, 0.5)),
    "green": ((0.0, 0.0), (0.125, 0.0), (0.375, 1.0), (0.64, 1.0), (0.91, 0.0), (1.0, 0.0)),
    "blue": ((0.0, 0.5), (0.11, 1.0), (0.34, 1.0), (0.65, 0.0), (1.0, 0.0)),
}


def jet(values):
    """RGB colours in [0, 1], shape values.shape + (3,), for floats in [0, 1] or ints in 0..255."""
    array = to_numpy(values, "values")
    if array.dtype == np.bool_ or array.dtype.kind not in "uif":
        raise TypeError(f"jet: values must be floats in [0, 1] or integers in 0..255, got dtype {array.dtype}")
    if array.dtype.kind in "ui":
        if array.size and (array.min() < 0 or array.max() > 255):
            raise ValueError(
                f"jet: integer values index a 256-colour table and must lie in 0..255, got values in "
                f"[{array.min()}, {array.max()}]"
            )
        x = array.astype(np.float64) / 255.0
    else:
        x = array.astype(np.float64)
        if x.size and not (np.isfinite(x).all() and x.min() >= 0.0 and x.max() <= 1.0):
            raise ValueError(
                f"jet: float values must be finite and lie in [0, 1], got values in [{np.nanmin(x)}, {np.nanmax(x)}]"
                + ("" if np.isfinite(x).all() else " with NaN or infinity")
            )
    flat = x.reshape(-1)
    channels = []
    for name in ("red", "green", "blue"):
        points = np.array(JET_SEGMENTS[name])
        channels.append(np.interp(flat, points[:, 0], points[:, 1]))
    return np.stack(channels, axis=-1).reshape(x.shape + (3,))
