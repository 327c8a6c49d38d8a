"""Keras 1/2's import paths for the image utilities, so that DLwP 1st edition listings port
by changing `keras` to `convlab`:

    from convlab.preprocessing.image import ImageDataGenerator   # keras.preprocessing.image
    from convlab.preprocessing import image                      # image.load_img, image.img_to_array

The code lives in convlab.data; these modules only name it where Keras 1/2 did.
"""

from . import image  # noqa: F401
from ..data.directory import image_dataset_from_directory  # noqa: F401

__all__ = ["image", "image_dataset_from_directory"]
