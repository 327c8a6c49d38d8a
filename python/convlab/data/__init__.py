"""Images in and out of arrays, and folders of images as lazy batched datasets.

    load_img, img_to_array, array_to_img, save_img     (convlab.data.image)
    image_dataset_from_directory, ImageDataset         (convlab.data.directory)
    ImageDataGenerator (flow, flow_from_directory)     (convlab.data.image_data_generator, Keras 1/2)
"""

from .image import load_img, img_to_array, array_to_img, save_img
from .directory import image_dataset_from_directory, ImageDataset
from .image_data_generator import ImageDataGenerator

__all__ = ["load_img", "img_to_array", "array_to_img", "save_img", "image_dataset_from_directory", "ImageDataset",
           "ImageDataGenerator"]
