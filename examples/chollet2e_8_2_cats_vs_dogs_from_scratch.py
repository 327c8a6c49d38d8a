"""Deep Learning with Python, 2nd edition, section 8.2: a convnet trained
from scratch on a small cats-vs-dogs folder tree read by image_dataset_from_directory, first
plain, then with data augmentation and dropout, with only the imports changed.

    from tensorflow import keras                                  ->  import convlab as keras
    from tensorflow.keras import layers                           ->  from convlab import layers
    from tensorflow.keras.utils import image_dataset_from_directory
        ->  from convlab.utils import image_dataset_from_directory

Stand-in data: Kaggle's cats and dogs are not downloaded. Listing 8.6 copies 1,000 + 1,000
images into train/, 500 + 500 into validation/ and 1,000 + 1,000 into test/; here the same
tree is written from convlab.datasets.shapes, circles in cat/ and squares in dog/, as JPEG
files that image_dataset_from_directory reads back as in the book. The images are 80x80 and
image_size 80 instead of 180 (80 is about the smallest input the five valid 3x3 convs and four
poolings leave a map of: 1x1x256), and the full run trains 10 + 20 epochs instead of 30 + 100
(the book's sizes take hours on a CPU). Other changes, each marked "port:" below:
the tf.data.Dataset built from numpy arrays is left out; the curves are drawn with
convlab.viz.plot_history instead of matplotlib; the augmented images are
saved as a PNG, and the augmentation is called with training=True (see the note there).

    python examples/chollet2e_8_2_cats_vs_dogs_from_scratch.py [--quick] [--out DIR]
"""

import os
import pathlib
import shutil

import numpy as np

import convlab as keras
from convlab import layers
from convlab.utils import image_dataset_from_directory

from _standin import parse_args, result, write_image_folders


def main(argv=None):
    args = parse_args("chollet2e_8_2_cats_vs_dogs_from_scratch", __doc__.splitlines()[0], argv)
    from convlab import viz
    keras.utils.set_seed(0)

    # ---- stand-in data: the book's folder tree, written from the shapes dataset (the book copies Kaggle's files)
    os.chdir(args.out)  # the listings' relative paths (cats_vs_dogs_small, *.keras) land in --out
    SIZE = 80  # the book: 180
    if args.quick:
        per_split, epochs_plain, epochs_augmented = {"train": 8, "validation": 4, "test": 4}, 1, 1
    else:
        per_split, epochs_plain, epochs_augmented = {"train": 1000, "validation": 500, "test": 1000}, 10, 20
    new_base_dir = pathlib.Path("cats_vs_dogs_small")
    shutil.rmtree(new_base_dir, ignore_errors=True)
    write_image_folders(new_base_dir, per_split, image_size=SIZE, folders=(("cat", "circle"), ("dog", "square")))

    # ---- Instantiating a small convnet for dogs vs. cats classification
    inputs = keras.Input(shape=(SIZE, SIZE, 3))
    x = layers.Rescaling(1./255)(inputs)
    x = layers.Conv2D(filters=32, kernel_size=3, activation="relu")(x)
    x = layers.MaxPooling2D(pool_size=2)(x)
    x = layers.Conv2D(filters=64, kernel_size=3, activation="relu")(x)
    x = layers.MaxPooling2D(pool_size=2)(x)
    x = layers.Conv2D(filters=128, kernel_size=3, activation="relu")(x)
    x = layers.MaxPooling2D(pool_size=2)(x)
    x = layers.Conv2D(filters=256, kernel_size=3, activation="relu")(x)
    x = layers.MaxPooling2D(pool_size=2)(x)
    x = layers.Conv2D(filters=256, kernel_size=3, activation="relu")(x)
    x = layers.Flatten()(x)
    outputs = layers.Dense(1, activation="sigmoid")(x)
    model = keras.Model(inputs=inputs, outputs=outputs)
    model.summary()

    # ---- Configuring the model for training
    model.compile(loss="binary_crossentropy",
                  optimizer="rmsprop",
                  metrics=["accuracy"])

    # ---- Using image_dataset_from_directory to read images
    train_dataset = image_dataset_from_directory(
        new_base_dir / "train",
        image_size=(SIZE, SIZE),
        batch_size=32)
    validation_dataset = image_dataset_from_directory(
        new_base_dir / "validation",
        image_size=(SIZE, SIZE),
        batch_size=32)
    test_dataset = image_dataset_from_directory(
        new_base_dir / "test",
        image_size=(SIZE, SIZE),
        batch_size=32)

    # ---- Displaying the shapes of the data and labels yielded by the Dataset
    # (port: the book's tf.data.Dataset made from numpy arrays is TensorFlow's and left out)
    for data_batch, labels_batch in train_dataset:
        print("data batch shape:", data_batch.shape)
        print("labels batch shape:", labels_batch.shape)
        break

    # ---- Fitting the model using a Dataset
    callbacks = [
        keras.callbacks.ModelCheckpoint(
            filepath="convnet_from_scratch.keras",
            save_best_only=True,
            monitor="val_loss")
    ]
    history = model.fit(
        train_dataset,
        epochs=epochs_plain,
        validation_data=validation_dataset,
        callbacks=callbacks)

    # ---- Displaying curves of loss and accuracy during training
    # (port: convlab.viz.plot_history draws the book's two plots into one PNG)
    viz.plot_history(history, path="history_from_scratch.png")

    # ---- Evaluating the model on the test set
    test_model = keras.models.load_model("convnet_from_scratch.keras")
    test_loss, test_acc = test_model.evaluate(test_dataset)
    print(f"Test accuracy: {test_acc:.3f}")

    # ---- Define a data augmentation stage to add to an image model
    data_augmentation = keras.Sequential(
        [
            layers.RandomFlip("horizontal"),
            layers.RandomRotation(0.1),
            layers.RandomZoom(0.2),
        ]
    )

    # ---- Displaying some randomly augmented training images
    # port: Keras' random layers augment when called directly (their training defaults to True);
    # convlab's layers run in inference mode unless told, so the call says training=True.
    # The nine pictures go to augmented.png instead of a matplotlib figure.
    for images, _ in train_dataset.take(1):
        tiles = []
        for i in range(9):
            augmented_images = data_augmentation(images, training=True)
            tiles.append(augmented_images[0].numpy().astype("uint8"))
        rows = [np.concatenate(tiles[row * 3:row * 3 + 3], axis=1) for row in range(3)]
        viz.write_png(np.concatenate(rows, axis=0), "augmented.png")

    # ---- Defining a new convnet that includes image augmentation and dropout
    inputs = keras.Input(shape=(SIZE, SIZE, 3))
    x = data_augmentation(inputs)
    x = layers.Rescaling(1./255)(x)
    x = layers.Conv2D(filters=32, kernel_size=3, activation="relu")(x)
    x = layers.MaxPooling2D(pool_size=2)(x)
    x = layers.Conv2D(filters=64, kernel_size=3, activation="relu")(x)
    x = layers.MaxPooling2D(pool_size=2)(x)
    x = layers.Conv2D(filters=128, kernel_size=3, activation="relu")(x)
    x = layers.MaxPooling2D(pool_size=2)(x)
    x = layers.Conv2D(filters=256, kernel_size=3, activation="relu")(x)
    x = layers.MaxPooling2D(pool_size=2)(x)
    x = layers.Conv2D(filters=256, kernel_size=3, activation="relu")(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(0.5)(x)
    outputs = layers.Dense(1, activation="sigmoid")(x)
    model = keras.Model(inputs=inputs, outputs=outputs)

    model.compile(loss="binary_crossentropy",
                  optimizer="rmsprop",
                  metrics=["accuracy"])

    # ---- Training the regularized convnet
    callbacks = [
        keras.callbacks.ModelCheckpoint(
            filepath="convnet_from_scratch_with_augmentation.keras",
            save_best_only=True,
            monitor="val_loss")
    ]
    history = model.fit(
        train_dataset,
        epochs=epochs_augmented,
        validation_data=validation_dataset,
        callbacks=callbacks)
    viz.plot_history(history, path="history_with_augmentation.png")

    # ---- Evaluating the model on the test set
    test_model = keras.models.load_model(
        "convnet_from_scratch_with_augmentation.keras")
    test_loss, test_acc = test_model.evaluate(test_dataset)
    print(f"Test accuracy: {test_acc:.3f}")
    result("test_accuracy", test_acc)


if __name__ == "__main__":
    main()
