"""Hands-On Machine Learning (Géron), chapter 14, "Implementing a ResNet-34 CNN Using Keras":
the book's ResidualUnit, a custom layer that keeps its sublayers in lists and calls them in
`call`, and the Sequential ResNet-34 built from 16 of them, with only the imports changed.

    import tensorflow as tf         ->  import convlab
    tf.keras.layers.Layer, ...      ->  convlab.layers.Layer, ...

The custom layer is the book's class as printed: its list attributes are tracked (their
layers' weights are the unit's), and the layers it calls without `training=` follow the
model's mode, so batch norm uses batch statistics while the model trains, as in Keras.

Stand-in data: the book only builds the network (for 224x224 ImageNet-style images, 10
classes); to show that the custom layer trains, this example also fits it briefly on the
synthetic shapes (convlab.datasets.shapes: circles, squares and triangles, 64x64; --quick:
32x32) and reports the test accuracy. That run is short for 21 million weights: after 5
epochs on 1,350 images the training accuracy is about 0.7 and the test accuracy about 0.4,
because batch norm's moving statistics (momentum 0.99), which inference uses, still trail
the weights (with batch statistics the same model does much better). It shows the book's
layer training, not a tuned ResNet. The parameter count does not depend on the image size
(global average pooling): 21,306,826, which the script checks against the hand count and
against convlab.applications.resnet34 (itself checked against torchvision's resnet34).

    python examples/geron14_3_resnet34.py [--quick] [--out DIR]

(It writes no files: its 21 million weights would take 85 MB.)
"""

from functools import partial

import convlab

from _standin import parse_args, result


DefaultConv2D = partial(convlab.layers.Conv2D, kernel_size=3, strides=1,
                        padding="same", kernel_initializer="he_normal",
                        use_bias=False)


class ResidualUnit(convlab.layers.Layer):
    def __init__(self, filters, strides=1, activation="relu", **kwargs):
        super().__init__(**kwargs)
        self.activation = convlab.activations.get(activation)
        self.main_layers = [
            DefaultConv2D(filters, strides=strides),
            convlab.layers.BatchNormalization(),
            self.activation,
            DefaultConv2D(filters),
            convlab.layers.BatchNormalization()
        ]
        self.skip_layers = []
        if strides > 1:
            self.skip_layers = [
                DefaultConv2D(filters, kernel_size=1, strides=strides),
                convlab.layers.BatchNormalization()
            ]

    def call(self, inputs):
        Z = inputs
        for layer in self.main_layers:
            Z = layer(Z)
        skip_Z = inputs
        for layer in self.skip_layers:
            skip_Z = layer(skip_Z)
        return self.activation(Z + skip_Z)


def main(argv=None):
    args = parse_args("geron14_3_resnet34", __doc__.splitlines()[0], argv)
    convlab.utils.set_seed(42)

    # ---- stand-in data: shapes images (the book builds the network and does not train it)
    from convlab.datasets import shapes
    SIZE = 32 if args.quick else 64  # the book: 224
    num_train, num_test, epochs = (32, 16, 1) if args.quick else (1500, 300, 5)
    train, test = shapes.load_data(num_train=num_train, num_test=num_test, image_size=SIZE, min_size=0.3,
                                   max_size=0.7)
    X_train, y_train = train.images.astype("float32") / 255, train.labels
    X_test, y_test = test.images.astype("float32") / 255, test.labels

    # ---- the book's ResNet-34
    model = convlab.Sequential([
        DefaultConv2D(64, kernel_size=7, strides=2, input_shape=[SIZE, SIZE, 3]),
        convlab.layers.BatchNormalization(),
        convlab.layers.Activation("relu"),
        convlab.layers.MaxPool2D(pool_size=3, strides=2, padding="same"),
    ])
    prev_filters = 64
    for filters in [64] * 3 + [128] * 4 + [256] * 6 + [512] * 3:
        strides = 1 if filters == prev_filters else 2
        model.add(ResidualUnit(filters, strides=strides))
        prev_filters = filters

    model.add(convlab.layers.GlobalAvgPool2D())
    model.add(convlab.layers.Flatten())
    model.add(convlab.layers.Dense(10, activation="softmax"))
    model.summary()

    # ---- checks: the parameters, by hand and from convlab.applications.resnet34
    def unit(filters, inputs, strides):  # two 3x3 convs without bias, two batch norms, a projection if strided
        projection = inputs * filters + 4 * filters if strides > 1 else 0
        return 9 * inputs * filters + 9 * filters * filters + 8 * filters + projection
    by_hand, prev_filters = 7 * 7 * 3 * 64 + 4 * 64 + 512 * 10 + 10, 64
    for filters in [64] * 3 + [128] * 4 + [256] * 6 + [512] * 3:
        by_hand += unit(filters, prev_filters, 1 if filters == prev_filters else 2)
        prev_filters = filters
    library = convlab.applications.resnet34(input_shape=(SIZE, SIZE, 3), classes=10).count_params()
    print(f"parameters: {model.count_params():,} (by hand {by_hand:,}; applications.resnet34 {library:,})")
    if not model.count_params() == by_hand == library:
        raise SystemExit("the book's ResNet-34 does not have the parameters of ResNet-34")

    # ---- a short training run on the stand-in data (not in the book)
    model.compile(loss="sparse_categorical_crossentropy", optimizer="nadam", metrics=["accuracy"])
    model.fit(X_train, y_train, epochs=epochs, validation_split=0.1)
    test_loss, test_accuracy = model.evaluate(X_test, y_test)
    result("test_accuracy", test_accuracy)


if __name__ == "__main__":
    main()
