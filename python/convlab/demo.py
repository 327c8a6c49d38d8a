"""Kernel demo: every CPU kernel family on a real image, with a gradient check.

Draws a picture with pillow (a sky gradient, a sun, a house), then runs on it:
a Sobel edge conv, a stride-2 transposed conv that upsamples it back, a separable conv,
max and average pooling, and batch normalization, printing each shape; then checks the
conv's backward kernels against finite differences. With --out, writes each result as
a PNG so you can look at what the kernels did.

    python -m convlab demo [--out DIR]
"""

from __future__ import annotations

import os
import time

import numpy as np
from PIL import Image, ImageDraw

from . import kernels
from ._command_line import ArgumentParser
from .testing import gradcheck


def draw_scene(size: int = 128) -> np.ndarray:
    """A (size, size, 3) float32 RGB picture in [0, 1], drawn with pillow."""
    image = Image.new("RGB", (size, size))
    draw = ImageDraw.Draw(image)
    for y in range(size):  # sky: dark blue at the top to light blue at the horizon
        t = y / (size - 1)
        draw.line([(0, y), (size, y)], fill=(int(40 + 120 * t), int(80 + 120 * t), int(160 + 90 * t)))
    s = size / 128
    draw.rectangle([0, int(96 * s), size, size], fill=(60, 140, 60))  # grass
    draw.ellipse([int(88 * s), int(12 * s), int(116 * s), int(40 * s)], fill=(250, 220, 60))  # sun
    draw.rectangle([int(24 * s), int(64 * s), int(72 * s), int(104 * s)], fill=(180, 80, 60))  # house
    draw.polygon([(int(20 * s), int(64 * s)), (int(48 * s), int(36 * s)), (int(76 * s), int(64 * s))],
                 fill=(110, 50, 40))  # roof
    draw.rectangle([int(42 * s), int(84 * s), int(54 * s), int(104 * s)], fill=(70, 40, 30))  # door
    return np.asarray(image, dtype=np.float32) / 255.0


def _save(array: np.ndarray, path: str) -> None:
    """Writes an (H, W) or (H, W, 1|3) array as a PNG, stretched to [0, 255]."""
    a = np.asarray(array, dtype=np.float64)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    lo, hi = float(a.min()), float(a.max())
    a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    Image.fromarray((a * 255).round().astype(np.uint8)).save(path)


def run(out_dir: str | None = None) -> dict:
    rng = np.random.default_rng(0)
    image = draw_scene()
    x = image[None]  # (1, 128, 128, 3)
    results = {}
    timings = {}

    def step(name, fn):
        start = time.perf_counter()
        value = fn()
        timings[name] = time.perf_counter() - start
        results[name] = value
        first = value[0] if isinstance(value, tuple) else value
        print(f"  {name:<28} {str(tuple(first.shape)):<22} {1e3 * timings[name]:7.2f} ms")
        return value

    print(f"image {tuple(x.shape)} float32, drawn with pillow")
    # Sobel filters on the gray image: horizontal and vertical edges as two output channels.
    sobel = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], dtype=np.float32)
    gray_to_edges = np.zeros((3, 3, 3, 2), dtype=np.float32)
    for c, weight in enumerate((0.299, 0.587, 0.114)):
        gray_to_edges[:, :, c, 0] = weight * sobel
        gray_to_edges[:, :, c, 1] = weight * sobel.T
    edges = step("conv2d (Sobel, same)", lambda: kernels.conv2d_forward(x, gray_to_edges, padding="same"))
    pooled = step("max_pool2d 2x2", lambda: kernels.max_pool2d_forward(x, 2))
    step("avg_pool2d 3x3 s2 same", lambda: kernels.avg_pool2d_forward(x, 3, 2, "same"))
    # A bilinear-like 4x4 kernel per channel: the transposed conv doubles the size back.
    tent = np.outer([0.25, 0.75, 0.75, 0.25], [0.25, 0.75, 0.75, 0.25]).astype(np.float32)
    up_kernel = np.zeros((4, 4, 3, 3), dtype=np.float32)
    for c in range(3):
        up_kernel[:, :, c, c] = tent
    step("conv2d_transpose s2 same", lambda: kernels.conv2d_transpose_forward(
        pooled, up_kernel, strides=2, padding="same"))
    depthwise = (rng.standard_normal((3, 3, 3, 2)) / 3).astype(np.float32)
    pointwise = (rng.standard_normal((1, 1, 6, 16)) / 6).astype(np.float32)
    step("separable_conv2d 3->16", lambda: kernels.separable_conv2d_forward(
        x, depthwise, pointwise, padding="same"))
    moving_mean = np.zeros(2, np.float32)
    moving_variance = np.ones(2, np.float32)
    normalized, mean, variance = step("batch_norm (training)", lambda: kernels.batch_norm_forward_training(
        edges, None, None, moving_mean, moving_variance))
    print(f"  batch-norm output per channel: mean {np.round(normalized.mean(axis=(0, 1, 2)), 4)}, "
          f"std {np.round(normalized.std(axis=(0, 1, 2)), 4)}")

    # Gradient check of conv2d's backward kernels on a 9x9 float64 crop, stride 2.
    crop = image[40:49, 20:29].astype(np.float64)[None]
    kernel = rng.standard_normal((3, 3, 3, 4))
    options = dict(strides=2, padding="same")
    ok = gradcheck(
        lambda a, w: kernels.conv2d_forward(a, w, **options),
        [crop, kernel],
        grad_fn=lambda g, a, w: [kernels.conv2d_backward_input(g, w, a.shape, **options),
                                 kernels.conv2d_backward_kernel(a, g, w.shape, **options)],
    )
    print(f"gradient check, conv2d backward (input and kernel) vs finite differences: "
          f"{'passed' if ok else 'FAILED'}")
    results["gradcheck"] = ok

    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        _save(image, os.path.join(out_dir, "input.png"))
        _save(np.hypot(edges[0, :, :, 0], edges[0, :, :, 1]), os.path.join(out_dir, "sobel_edges.png"))
        _save(results["max_pool2d 2x2"][0], os.path.join(out_dir, "max_pool.png"))
        _save(results["conv2d_transpose s2 same"][0], os.path.join(out_dir, "upsampled.png"))
        _save(normalized[0, :, :, 0], os.path.join(out_dir, "batch_norm_channel0.png"))
        print(f"wrote PNGs to {out_dir}")
    return results


def main(argv=None) -> int:
    parser = ArgumentParser(prog="python -m convlab demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="folder to write the result images to")
    args = parser.parse_args(argv)
    results = run(args.out)
    return 0 if results["gradcheck"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
