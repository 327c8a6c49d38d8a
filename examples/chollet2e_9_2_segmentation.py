"""Deep Learning with Python, 2nd edition, section 9.2 (image segmentation):
load pictures and trimaps from files, a Conv2D / Conv2DTranspose net with a per-pixel softmax,
train it, and predict a mask, with only the imports changed.

    from tensorflow import keras                                ->  import convlab as keras
    from tensorflow.keras import layers                         ->  from convlab import layers
    from tensorflow.keras.utils import load_img, img_to_array, array_to_img
        ->  from convlab.utils import load_img, img_to_array, array_to_img

Stand-in data: Oxford-IIIT Pets is not downloaded. The same files are written instead, from
convlab.datasets.shapes: images/<name>.jpg and annotations/trimaps/<name>.png, trimap pixels
1 (the shape), 2 (background) and 3 (its contour), as the Pets trimaps. The images are 32x32
(img_size (32, 32) instead of (200, 200)) and the full run has 2,000 of them (200 held out for
validation instead of 1,000 of 7,390) and 20 epochs instead of 50: the book's net and sizes
take hours on a CPU. The pictures the book shows with matplotlib are written as PNG files, and
the mean IoU of the three classes over the validation images (convlab.metrics.MeanIoU) is
printed at the end as the result.

    python examples/chollet2e_9_2_segmentation.py [--quick] [--out DIR]
"""

import os
import random

import numpy as np

import convlab as keras
from convlab import layers
from convlab.utils import array_to_img, img_to_array, load_img

from _standin import parse_args, result, write_pets_folders


def main(argv=None):
    args = parse_args("chollet2e_9_2_segmentation", __doc__.splitlines()[0], argv)
    keras.utils.set_seed(0)

    # ---- stand-in data: Pets-style files written from the shapes dataset (the book downloads Oxford-IIIT Pets)
    os.chdir(args.out)  # the listings' relative paths (images/, annotations/, *.keras) land in --out
    SIZE = 32  # the book: 200
    if args.quick:
        num_files, num_val, epochs = 32, 8, 1
    else:
        num_files, num_val, epochs = 2000, 200, 20  # the book: 7,390 images, 1,000 for validation, 50 epochs
    write_pets_folders(num_files, image_size=SIZE)

    # ---- The lists of input and target files
    input_dir = "images/"
    target_dir = "annotations/trimaps/"

    input_img_paths = sorted(
        [os.path.join(input_dir, fname)
         for fname in os.listdir(input_dir)
         if fname.endswith(".jpg")])
    target_paths = sorted(
        [os.path.join(target_dir, fname)
         for fname in os.listdir(target_dir)
         if fname.endswith(".png") and not fname.startswith(".")])

    # ---- One picture and its trimap (port: PNG files instead of plt.imshow)
    load_img(input_img_paths[9]).save("input_9.png")

    def display_target(target_array, path):
        normalized_array = (target_array.astype("uint8") - 1) * 127
        array_to_img(normalized_array, scale=False).save(path)

    img = img_to_array(load_img(target_paths[9], color_mode="grayscale"))
    display_target(img, "target_9.png")

    # ---- Loading the inputs and targets into arrays, with a validation split
    img_size = (SIZE, SIZE)
    num_imgs = len(input_img_paths)

    random.Random(1337).shuffle(input_img_paths)
    random.Random(1337).shuffle(target_paths)

    def path_to_input_image(path):
        return img_to_array(load_img(path, target_size=img_size))

    def path_to_target(path):
        img = img_to_array(
            load_img(path, target_size=img_size, color_mode="grayscale"))
        img = img.astype("uint8") - 1
        return img

    input_imgs = np.zeros((num_imgs,) + img_size + (3,), dtype="float32")
    targets = np.zeros((num_imgs,) + img_size + (1,), dtype="uint8")
    for i in range(num_imgs):
        input_imgs[i] = path_to_input_image(input_img_paths[i])
        targets[i] = path_to_target(target_paths[i])

    num_val_samples = num_val  # the book: 1000
    train_input_imgs = input_imgs[:-num_val_samples]
    train_targets = targets[:-num_val_samples]
    val_input_imgs = input_imgs[-num_val_samples:]
    val_targets = targets[-num_val_samples:]

    # ---- The segmentation model
    def get_model(img_size, num_classes):
        inputs = keras.Input(shape=img_size + (3,))
        x = layers.Rescaling(1./255)(inputs)

        x = layers.Conv2D(64, 3, strides=2, activation="relu", padding="same")(x)
        x = layers.Conv2D(64, 3, activation="relu", padding="same")(x)
        x = layers.Conv2D(128, 3, strides=2, activation="relu", padding="same")(x)
        x = layers.Conv2D(128, 3, activation="relu", padding="same")(x)
        x = layers.Conv2D(256, 3, strides=2, padding="same", activation="relu")(x)
        x = layers.Conv2D(256, 3, activation="relu", padding="same")(x)

        x = layers.Conv2DTranspose(256, 3, activation="relu", padding="same")(x)
        x = layers.Conv2DTranspose(
            256, 3, activation="relu", padding="same", strides=2)(x)
        x = layers.Conv2DTranspose(128, 3, activation="relu", padding="same")(x)
        x = layers.Conv2DTranspose(
            128, 3, activation="relu", padding="same", strides=2)(x)
        x = layers.Conv2DTranspose(64, 3, activation="relu", padding="same")(x)
        x = layers.Conv2DTranspose(
            64, 3, activation="relu", padding="same", strides=2)(x)

        outputs = layers.Conv2D(num_classes, 3, activation="softmax",
                                padding="same")(x)

        model = keras.Model(inputs, outputs)
        return model

    model = get_model(img_size=img_size, num_classes=3)
    model.summary()  # 2,880,643 parameters, at any image size

    # ---- Compiling and fitting the model
    model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy")

    callbacks = [
        keras.callbacks.ModelCheckpoint("oxford_segmentation.keras",
                                        save_best_only=True)
    ]

    history = model.fit(train_input_imgs, train_targets,
                        epochs=epochs,
                        callbacks=callbacks,
                        batch_size=64,
                        validation_data=(val_input_imgs, val_targets))

    # ---- The training and validation loss (port: convlab.viz.plot_history writes a PNG)
    keras.viz.plot_history(history, path="history.png")

    # ---- Predicting a mask for one validation image (port: PNG files instead of plt.imshow)
    model = keras.models.load_model("oxford_segmentation.keras")

    i = 4
    test_image = val_input_imgs[i]
    array_to_img(test_image).save("val_image_4.png")

    mask = model.predict(np.expand_dims(test_image, 0))[0]

    def display_mask(pred):
        mask = np.argmax(pred, axis=-1)
        mask *= 127
        array_to_img(mask[..., None], scale=False).save("val_mask_4.png")

    display_mask(mask)

    # ---- the result: mean IoU of foreground, background and contour over the validation images
    mean_iou = keras.metrics.MeanIoU(num_classes=3, sparse_y_pred=False)
    mean_iou.update_state(val_targets, model.predict(val_input_imgs))
    result("val_mean_iou", mean_iou.result())


if __name__ == "__main__":
    main()
