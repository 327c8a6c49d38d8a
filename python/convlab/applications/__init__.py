"""The books' models as functions that return convlab models.

    book_models   Chollet's convnets: mnist_convnet, mnist_convnet_first_edition_base,
                  cats_vs_dogs_convnet, segmentation_net, residual_convnet, mini_xception
    vgg16         VGG16 (base or with its classifier top)
"""

from .book_models import (  # noqa: F401
    cats_vs_dogs_convnet, mini_xception, mnist_convnet, mnist_convnet_first_edition_base, residual_block,
    residual_convnet, segmentation_net,
)
from .vgg16 import vgg16  # noqa: F401
