"""The books' models: every layer's output shape and the summary totals, against the
numbers the books' Keras summaries print (shared/MODELS.md)."""

import numpy as np
import pytest

import convlab
from convlab import applications, layers


def shapes(model, kind=None):
    """Output shapes (without the batch axis) of the model's layers, optionally of one type."""
    return [layer.output.shape[1:] for layer in model.layers if kind is None or isinstance(layer, kind)]


def totals(model):
    lines = []
    model.summary(print_fn=lines.append)
    return lines[-4:-1]


def expect_totals(model, total, trainable=None):
    trainable = total if trainable is None else trainable
    assert model.count_params() == total
    assert sum(w.size for w in model.trainable_weights) == trainable
    assert totals(model) == [f"Total params: {total:,}", f"Trainable params: {trainable:,}",
                             f"Non-trainable params: {total - trainable:,}"]


def test_mnist_convnet_matches_listing_8_1():
    model = applications.mnist_convnet()
    assert shapes(model) == [(28, 28, 1), (26, 26, 32), (13, 13, 32), (11, 11, 64), (5, 5, 64), (3, 3, 128),
                             (1152,), (10,)]
    assert [layer.count_params() for layer in model.layers if layer.weights] == [320, 18496, 73856, 11530]
    expect_totals(model, 104_202)


def test_mnist_convnet_without_pooling_matches_the_book():
    model = applications.mnist_convnet(pooling=False)
    assert shapes(model) == [(28, 28, 1), (26, 26, 32), (24, 24, 64), (22, 22, 128), (61952,), (10,)]
    expect_totals(model, 712_202)


def test_mnist_convnet_predicts_a_probability_distribution():
    probabilities = applications.mnist_convnet()(np.random.default_rng(0).random((3, 28, 28, 1))).numpy()
    assert probabilities.shape == (3, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)


def test_first_edition_mnist_conv_base_matches_listing_5_1():
    model = applications.mnist_convnet_first_edition_base()
    assert isinstance(model, convlab.Sequential)
    assert shapes(model) == [(26, 26, 32), (13, 13, 32), (11, 11, 64), (5, 5, 64), (3, 3, 64)]
    expect_totals(model, 55_744)


def test_cats_vs_dogs_convnet_matches_listing_8_7():
    model = applications.cats_vs_dogs_convnet()
    assert shapes(model) == [(180, 180, 3), (180, 180, 3), (178, 178, 32), (89, 89, 32), (87, 87, 64),
                             (43, 43, 64), (41, 41, 128), (20, 20, 128), (18, 18, 256), (9, 9, 256),
                             (7, 7, 256), (12544,), (1,)]
    assert isinstance(model.layers[1], layers.Rescaling)
    expect_totals(model, 991_041)


def test_cats_vs_dogs_convnet_with_augmentation_and_dropout_puts_them_where_the_book_does():
    augmentation = convlab.Sequential([layers.Lambda(lambda x: x * 1.0)], name="data_augmentation")
    model = applications.cats_vs_dogs_convnet(augmentation=augmentation, dropout=0.5)
    assert model.layers[1] is augmentation and isinstance(model.layers[2], layers.Rescaling)
    assert isinstance(model.layers[-2], layers.Dropout) and model.layers[-2].rate == 0.5
    expect_totals(model, 991_041)


def test_segmentation_net_matches_listing_9_4():
    model = applications.segmentation_net(img_size=(200, 200), num_classes=3)
    assert shapes(model) == [(200, 200, 3), (200, 200, 3), (100, 100, 64), (100, 100, 64), (50, 50, 128),
                             (50, 50, 128), (25, 25, 256), (25, 25, 256), (25, 25, 256), (50, 50, 256),
                             (50, 50, 128), (100, 100, 128), (100, 100, 64), (200, 200, 64), (200, 200, 3)]
    assert sum(isinstance(layer, layers.Conv2DTranspose) for layer in model.layers) == 6
    expect_totals(model, 2_880_643)


def test_residual_convnet_matches_the_book():
    model = applications.residual_convnet()
    assert shapes(model, layers.Add) == [(16, 16, 32), (8, 8, 64), (8, 8, 128)]
    projections = [layer for layer in model.layers if isinstance(layer, layers.Conv2D) and layer.kernel_size == (1, 1)]
    assert [(p.strides, p.filters) for p in projections] == [((2, 2), 32), ((2, 2), 64), ((1, 1), 128)]
    assert model.output_shape == (None, 1)
    expect_totals(model, 297_697)
    assert applications.residual_convnet()(np.zeros((2, 32, 32, 3), dtype=np.float32)).shape == (2, 1)


def test_mini_xception_matches_the_book():
    model = applications.mini_xception()
    assert shapes(model, layers.Add) == [(88, 88, 32), (44, 44, 64), (22, 22, 128), (11, 11, 256), (6, 6, 512)]
    assert model.layers[2].output.shape == (None, 176, 176, 32)  # Conv 5x5, no bias, after Rescaling
    assert sum(isinstance(layer, layers.BatchNormalization) for layer in model.layers) == 10
    assert sum(isinstance(layer, layers.SeparableConv2D) for layer in model.layers) == 10
    assert all(not layer.use_bias for layer in model.layers if isinstance(layer, (layers.Conv2D, layers.SeparableConv2D)))
    assert isinstance(model.layers[-2], layers.Dropout)
    expect_totals(model, 721_857, trainable=718_849)


def mini_xception_parameter_count(block_sizes, num_classes):
    """Counted by hand from the listing: weights (trainable) and BN moving statistics."""
    weights, moving = 5 * 5 * 3 * 32, 0  # the stem conv, no bias
    channels = 32
    for size in block_sizes:
        weights += 2 * channels + 9 * channels + channels * size  # BN gamma/beta, depthwise, pointwise
        weights += 2 * size + 9 * size + size * size
        weights += channels * size  # the 1x1 shortcut projection, no bias
        moving += 2 * channels + 2 * size
        channels = size
    outputs = 1 if num_classes == 1 else num_classes
    weights += channels * outputs + outputs
    return weights + moving, weights


def test_mini_xception_with_fewer_blocks_for_small_images():
    assert mini_xception_parameter_count((32, 64, 128, 256, 512), 1) == (721_857, 718_849)  # the book's, by hand
    model = applications.mini_xception(input_shape=(48, 48, 3), num_classes=3, block_sizes=(32, 64, 128))
    assert shapes(model, layers.Add) == [(22, 22, 32), (11, 11, 64), (6, 6, 128)]
    assert isinstance(model.layers[-1], layers.Dense) and model.output_shape == (None, 3)
    assert model.layers[-1].activation.__name__ == "softmax"
    total, trainable = mini_xception_parameter_count((32, 64, 128), 3)
    expect_totals(model, total, trainable=trainable)
    numpy_sizes = applications.mini_xception(input_shape=(48, 48, 3), block_sizes=[np.int64(8), np.int32(16)])
    assert shapes(numpy_sizes, layers.Add) == [(22, 22, 8), (11, 11, 16)]
    for bad in [(), (32, 0), [32, 64.0], "32", (True,)]:
        with pytest.raises(ValueError, match="block_sizes must be a non-empty list of positive ints"):
            applications.mini_xception(block_sizes=bad)


def test_vgg16_base_matches_keras_names_shapes_and_total():
    model = applications.vgg16(include_top=False, input_shape=(180, 180, 3), weights=None)
    names = [layer.name for layer in model.layers[1:]]
    assert names[:3] == ["block1_conv1", "block1_conv2", "block1_pool"]
    assert names[-4:] == ["block5_conv1", "block5_conv2", "block5_conv3", "block5_pool"]
    assert len(names) == 18
    assert shapes(model, layers.MaxPooling2D) == [(90, 90, 64), (45, 45, 128), (22, 22, 256), (11, 11, 512),
                                                  (5, 5, 512)]
    assert model.output_shape == (None, 5, 5, 512)
    expect_totals(model, 14_714_688)


def test_vgg16_with_its_top_matches_keras():
    model = applications.vgg16(include_top=True, weights=None)
    assert [layer.name for layer in model.layers[-4:]] == ["flatten", "fc1", "fc2", "predictions"]
    assert model.input_shape == (None, 224, 224, 3) and model.output_shape == (None, 1000)
    expect_totals(model, 138_357_544)


def test_vgg16_refuses_downloading_weights_and_a_top_below_keras_minimum_size():
    with pytest.raises(NotImplementedError):
        applications.vgg16(weights="imagenet")
    with pytest.raises(ValueError, match="at least 32x32"):
        applications.vgg16(include_top=True, input_shape=(31, 31, 3))
