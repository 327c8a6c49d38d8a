"""What every example shares: its command line, its result line, and the stand-in data that
replaces what the books download (nothing is downloaded here).

    parse_args(name, description)  --quick (tiny sizes, 1 epoch: seconds) and --out DIR
    result(name, value)            prints the last line, "RESULT name=value", that tests parse
    write_image_folders(...)       the books' folder trees of class subfolders of JPEG files
                                   (cats_and_dogs_small/train/cats/cat.0.jpg, ...), drawn from
                                   convlab.datasets.shapes: circles stand in for cats and
                                   squares for dogs
    write_pets_folders(...)        Oxford-IIIT Pets' images/ and annotations/trimaps/ files,
                                   from the shapes and their trimaps
"""

import argparse
import math
import os

import numpy as np


def parse_args(name, description, argv=None):
    """The example's options; creates --out. `name` is the script's name (its default folder)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true",
                        help="tiny data, 1 epoch: runs in seconds and checks that the listing runs, not what it learns")
    parser.add_argument("--out", default=os.path.join("convlab-runs", "examples", name),
                        help="folder for the files the example writes (default: %(default)s)")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    return args


def result(name, value):
    """The example's final metric as its last line: RESULT name=value."""
    value = float(value)
    if not math.isfinite(value):
        print(f"RESULT {name}={value}")
    else:
        print(f"RESULT {name}={value:.6g}")


def write_image_folders(base_dir, counts, image_size, folders=(("cats", "circle"), ("dogs", "square")), seed=0,
                        min_size=0.3, max_size=0.7):
    """Write shapes images as base_dir/<split>/<folder>/<file>.<i>.jpg and return base_dir.

    counts: {split name: images per class}, e.g. {"train": 1000, "validation": 500, "test": 1000}
    as the book copies them; each split is drawn from its own seed stream (train, validation,
    test), so no image appears in two splits. folders: (class folder, shapes class) pairs:
    by default the book's "cats" folder holds circles and its "dogs" folder squares, and the
    files are named as the book's (cats/cat.0.jpg: the folder name without its last "s").
    """
    from convlab.data import save_img
    from convlab.datasets import shapes

    parts = {"train": "train", "validation": "validation", "test": "test"}
    for split, per_class in counts.items():
        part = parts.get(split, "train")
        # draw enough images that each wanted class has per_class of them (classes are uniform)
        drawn = shapes.generate(int(per_class * len(shapes.CLASS_NAMES) * 1.5) + 16, image_size=image_size, seed=seed,
                                part=part, min_size=min_size, max_size=max_size)
        for folder_name, shape in folders:
            indices = np.flatnonzero(drawn.labels == shapes.CLASS_NAMES.index(shape))[:per_class]
            if len(indices) < per_class:
                raise RuntimeError(f"drew {len(indices)} {shape} images for {split}, wanted {per_class}")
            folder = os.path.join(base_dir, split, folder_name)
            os.makedirs(folder, exist_ok=True)
            stem = folder_name[:-1] if folder_name.endswith("s") else folder_name
            for i, index in enumerate(indices):
                save_img(os.path.join(folder, f"{stem}.{i}.jpg"), drawn.images[index], scale=False, quality=95)
    return base_dir


def write_pets_folders(num_images, image_size, seed=0, min_size=0.3, max_size=0.6):
    """Write shapes images and their trimaps as Oxford-IIIT Pets lays them out, in the current
    folder: images/<name>.jpg and annotations/trimaps/<name>.png, the trimap's pixels 1 (foreground), 2 (background) and
    3 (contour), which the book turns into 0, 1, 2 by subtracting 1. Returns the two folders."""
    from PIL import Image

    from convlab.data import save_img
    from convlab.datasets import shapes

    drawn = shapes.generate(num_images, image_size=image_size, seed=seed, min_size=min_size, max_size=max_size)
    input_dir, target_dir = "images/", "annotations/trimaps/"
    os.makedirs(input_dir, exist_ok=True)
    os.makedirs(target_dir, exist_ok=True)
    for i in range(num_images):
        name = f"{drawn.class_names[drawn.labels[i]]}_{i}"
        save_img(os.path.join(input_dir, name + ".jpg"), drawn.images[i], scale=False, quality=95)
        Image.fromarray(drawn.masks[i] + 1).save(os.path.join(target_dir, name + ".png"))
    return input_dir, target_dir
