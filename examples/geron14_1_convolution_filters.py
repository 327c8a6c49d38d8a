"""Hands-On Machine Learning (Géron), chapter 14, "Implementing Convolutional Layers" and
"Pooling Layers": two hand-made 7x7 filters (a white vertical line, a white horizontal line)
run over scikit-learn's two sample photos, then max pooling, depthwise max pooling and global
average pooling, with the TensorFlow calls replaced by convlab's.

    import tensorflow as tf; from tensorflow import keras  ->  import convlab as keras; from convlab import kernels
    tf.nn.conv2d(images, filters, strides=1, padding="same")
                                  ->  kernels.conv2d_forward(images, filters, strides=1, padding="same")
    keras.layers.MaxPool2D, GlobalAvgPool2D                ->  the same names in convlab.layers
    depthwise tf.nn.max_pool(..., ksize=(1, 1, 1, 3), ...) ->  keras.layers.DepthMaxPooling(3)

The data is the book's: china.jpg and flower.jpg ship inside the scikit-learn wheel
(sklearn.datasets.load_sample_image). One line differs: TensorFlow converts the float32
filters to the photos' float64, while convlab's kernels take one dtype and refuse a mix
(naming both), so the photos are made float32. The feature maps the book shows with
plt.imshow are written as PNG files. As a check, the convolution and the pooling are
recomputed with plain numpy (window sums and window maxima); the result is the largest
difference.

    python examples/geron14_1_convolution_filters.py [--quick] [--out DIR]
"""

import os

import numpy as np
from sklearn.datasets import load_sample_image

import convlab as keras
from convlab import kernels

from _standin import parse_args, result


def to_png(feature_map, path):
    """A feature map scaled to 0..255 (its maximum white), as plt.imshow(..., cmap="gray") shows it."""
    feature_map = np.asarray(feature_map, dtype=np.float64)
    scaled = 255 * (feature_map - feature_map.min()) / max(feature_map.max() - feature_map.min(), 1e-12)
    keras.viz.write_png(scaled.round().astype(np.uint8), path)


def window_sums(x, window, axis):
    """Sums over `window` consecutive pixels along `axis`, centred, zeros outside ("same" padding)."""
    pad = [(0, 0)] * x.ndim
    pad[axis] = ((window - 1) // 2, window // 2)
    cumulative = np.cumsum(np.pad(x, pad), axis=axis)
    cumulative = np.concatenate([np.zeros_like(np.take(cumulative, [0], axis=axis)), cumulative], axis=axis)
    size = x.shape[axis]
    return np.take(cumulative, np.arange(window, window + size), axis=axis) - np.take(cumulative, np.arange(size),
                                                                                      axis=axis)


def main(argv=None):
    args = parse_args("geron14_1_convolution_filters", __doc__.splitlines()[0], argv)

    # ---- Load sample images
    china = load_sample_image("china.jpg") / 255
    flower = load_sample_image("flower.jpg") / 255
    images = np.array([china, flower], dtype=np.float32)  # port: float32, the filters' dtype (see above)
    if args.quick:
        images = np.ascontiguousarray(images[:, 100:228, 200:392])  # a 128x192 crop of each photo
    batch_size, height, width, channels = images.shape

    # ---- Create 2 filters
    filters = np.zeros(shape=(7, 7, channels, 2), dtype=np.float32)
    filters[:, 3, :, 0] = 1  # vertical line
    filters[3, :, :, 1] = 1  # horizontal line

    outputs = kernels.conv2d_forward(images, filters, strides=1, padding="same")

    # plt.imshow(outputs[0, :, :, 1], cmap="gray")  # plot 1st image's 2nd feature map
    for image_index, name in enumerate(["china", "flower"]):
        to_png(images[image_index] * 255, os.path.join(args.out, f"{name}.png"))
        for feature_map_index, line in enumerate(["vertical", "horizontal"]):
            to_png(outputs[image_index, :, :, feature_map_index],
                   os.path.join(args.out, f"{name}_{line}_line_filter.png"))

    # ---- Pooling layers
    max_pool = keras.layers.MaxPool2D(pool_size=2)
    pooled = max_pool(outputs).numpy()  # the feature maps, halved: the same as kernels.max_pool2d_forward
    to_png(pooled[0, :, :, 1], os.path.join(args.out, "china_horizontal_line_filter_max_pool.png"))

    # depthwise max pooling (the book: tf.nn.max_pool with ksize=(1, 1, 1, 3)): the brightest channel
    depth_pool = keras.layers.DepthMaxPooling(3)
    brightest = depth_pool(images).numpy()
    to_png(brightest[0, :, :, 0], os.path.join(args.out, "china_depth_max_pool.png"))

    global_avg_pool = keras.layers.GlobalAvgPool2D()
    print("global average of each feature map:", global_avg_pool(outputs).numpy().round(3).tolist())

    # ---- check: the same maps from numpy. A line filter adds up the three channels over 7 pixels
    # of a column (vertical) or of a row (horizontal); max pooling takes each 2x2 block's maximum.
    channel_sums = images.astype(np.float64).sum(axis=-1)
    expected = np.stack([window_sums(channel_sums, 7, axis=1), window_sums(channel_sums, 7, axis=2)], axis=-1)
    h, w = height // 2 * 2, width // 2 * 2
    expected_pool = outputs[:, :h, :w].reshape(batch_size, h // 2, 2, w // 2, 2, 2).max(axis=(2, 4))
    expected_depth = images.max(axis=-1, keepdims=True)
    conv_difference = np.abs(outputs - expected).max()
    pool_difference = max(np.abs(pooled - expected_pool).max(), np.abs(brightest - expected_depth).max())
    print(f"conv2d_forward vs numpy: largest difference {conv_difference:.3g} on values up to {expected.max():.3g}; "
          f"pooling vs numpy: {pool_difference:.3g}")
    print(f"wrote the photos and their feature maps to {args.out}")
    result("max_difference_from_numpy", max(conv_difference, pool_difference))


if __name__ == "__main__":
    main()
