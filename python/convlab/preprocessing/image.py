"""keras.preprocessing.image, as DLwP 1st edition imports it: load_img, img_to_array,
array_to_img, save_img and ImageDataGenerator (with its iterators). The code lives in
convlab.data.image and convlab.data.image_data_generator.
"""

from ..data.image import array_to_img, img_to_array, load_img, save_img  # noqa: F401
from ..data.image_data_generator import (  # noqa: F401
    DirectoryIterator, ImageDataGenerator, Iterator, NumpyArrayIterator,
)

__all__ = ["load_img", "img_to_array", "array_to_img", "save_img", "ImageDataGenerator", "Iterator",
           "NumpyArrayIterator", "DirectoryIterator"]
