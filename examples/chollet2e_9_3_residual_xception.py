"""Deep Learning with Python, 2nd edition, section 9.3 (modern convnet architecture patterns):
residual connections, batch normalization, depthwise separable convolutions, and the mini
Xception-like model trained on cats vs dogs with augmentation, with only the imports changed.

    from tensorflow import keras                                  ->  import convlab as keras
    from tensorflow.keras import layers                           ->  from convlab import layers
    from tensorflow.keras.utils import image_dataset_from_directory
        ->  from convlab.utils import image_dataset_from_directory

Stand-in data: chapter 8's cats_vs_dogs_small folders (the book reuses them here), written
from convlab.datasets.shapes, circles in cat/ and squares in dog/ (see
chollet2e_8_2_cats_vs_dogs_from_scratch.py). The images are 48x48 and the model's input 48
instead of 180 (the five residual blocks take 44x44 down to 2x2), and the full run trains 20
epochs instead of 100, with the book's 2,000 / 1,000 / 2,000 images. The validation curves are
written with convlab.viz.plot_history, and the test accuracy (which this section of the book
does not compute) is the result.

    python examples/chollet2e_9_3_residual_xception.py [--quick] [--out DIR]
"""

import os
import pathlib
import shutil

import convlab as keras
from convlab import layers
from convlab.utils import image_dataset_from_directory

from _standin import parse_args, result, write_image_folders


def main(argv=None):
    args = parse_args("chollet2e_9_3_residual_xception", __doc__.splitlines()[0], argv)
    keras.utils.set_seed(0)

    # ---- stand-in data: chapter 8's folder tree, written from the shapes dataset
    os.chdir(args.out)
    SIZE = 48  # the book: 180
    if args.quick:
        per_split, epochs = {"train": 8, "validation": 4, "test": 4}, 1
    else:
        per_split, epochs = {"train": 1000, "validation": 500, "test": 1000}, 20  # the book: 100 epochs
    new_base_dir = pathlib.Path("cats_vs_dogs_small")
    shutil.rmtree(new_base_dir, ignore_errors=True)
    write_image_folders(new_base_dir, per_split, image_size=SIZE, folders=(("cat", "circle"), ("dog", "square")))
    train_dataset = image_dataset_from_directory(new_base_dir / "train", image_size=(SIZE, SIZE), batch_size=32)
    validation_dataset = image_dataset_from_directory(new_base_dir / "validation", image_size=(SIZE, SIZE),
                                                      batch_size=32)
    test_dataset = image_dataset_from_directory(new_base_dir / "test", image_size=(SIZE, SIZE), batch_size=32)

    # ---- Residual block where the number of filters changes
    inputs = keras.Input(shape=(32, 32, 3))
    x = layers.Conv2D(32, 3, activation="relu")(inputs)
    residual = x
    x = layers.Conv2D(64, 3, activation="relu", padding="same")(x)
    residual = layers.Conv2D(64, 1)(residual)
    x = layers.add([x, residual])

    # ---- Case where the target block includes a max pooling layer
    inputs = keras.Input(shape=(32, 32, 3))
    x = layers.Conv2D(32, 3, activation="relu")(inputs)
    residual = x
    x = layers.Conv2D(64, 3, activation="relu", padding="same")(x)
    x = layers.MaxPooling2D(2, padding="same")(x)
    residual = layers.Conv2D(64, 1, strides=2)(residual)
    x = layers.add([x, residual])

    # ---- A simple convnet structured into a series of residual blocks
    inputs = keras.Input(shape=(32, 32, 3))
    x = layers.Rescaling(1./255)(inputs)

    def residual_block(x, filters, pooling=False):
        residual = x
        x = layers.Conv2D(filters, 3, activation="relu", padding="same")(x)
        x = layers.Conv2D(filters, 3, activation="relu", padding="same")(x)
        if pooling:
            x = layers.MaxPooling2D(2, padding="same")(x)
            residual = layers.Conv2D(filters, 1, strides=2)(residual)
        elif filters != residual.shape[-1]:
            residual = layers.Conv2D(filters, 1)(residual)
        x = layers.add([x, residual])
        return x

    x = residual_block(x, filters=32, pooling=True)
    x = residual_block(x, filters=64, pooling=True)
    x = residual_block(x, filters=128, pooling=False)

    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(1, activation="sigmoid")(x)
    model = keras.Model(inputs=inputs, outputs=outputs)
    model.summary()  # 297,697 parameters

    # ---- Batch normalization, placed between the conv and its activation
    inputs = keras.Input(shape=(32, 32, 3))
    x = layers.Conv2D(32, 3, use_bias=False)(inputs)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)

    # ---- Putting it together: a mini Xception-like model (the augmentation stage is chapter 8's)
    data_augmentation = keras.Sequential(
        [
            layers.RandomFlip("horizontal"),
            layers.RandomRotation(0.1),
            layers.RandomZoom(0.2),
        ]
    )

    inputs = keras.Input(shape=(SIZE, SIZE, 3))
    x = data_augmentation(inputs)

    x = layers.Rescaling(1./255)(x)
    x = layers.Conv2D(filters=32, kernel_size=5, use_bias=False)(x)

    for size in [32, 64, 128, 256, 512]:
        residual = x

        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(size, 3, padding="same", use_bias=False)(x)

        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(size, 3, padding="same", use_bias=False)(x)

        x = layers.MaxPooling2D(3, strides=2, padding="same")(x)

        residual = layers.Conv2D(
            size, 1, strides=2, padding="same", use_bias=False)(residual)
        x = layers.add([x, residual])

    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.5)(x)
    outputs = layers.Dense(1, activation="sigmoid")(x)
    model = keras.Model(inputs=inputs, outputs=outputs)
    model.summary()  # 721,857 parameters at any input size

    model.compile(loss="binary_crossentropy",
                  optimizer="rmsprop",
                  metrics=["accuracy"])
    history = model.fit(
        train_dataset,
        epochs=epochs,
        validation_data=validation_dataset)
    keras.viz.plot_history(history, path="history.png")  # port: the book plots the curves with matplotlib
    model.save("mini_xception.keras")

    # ---- the test set, as section 8.2 evaluates chapter 8's models
    test_loss, test_acc = model.evaluate(test_dataset)
    print(f"Test accuracy: {test_acc:.3f}")
    result("test_accuracy", test_acc)


if __name__ == "__main__":
    main()
