"""The books' models as functions that return convlab models.

    book_models   Chollet's convnets: mnist_convnet, mnist_convnet_first_edition_base,
                  cats_vs_dogs_convnet, segmentation_net, residual_convnet, mini_xception
    vgg16         VGG16 (base or with its classifier top)
    xception, resnet50, mobilenet_v2   Keras' ImageNet architectures with Keras' layer names and
                  arguments (also as Keras spells them: Xception, ResNet50, MobileNetV2);
                  torchvision_resnet50 (torchvision's layout and names)
    weight_import load_keras_weights (.h5, .weights.h5, .keras; model.load_weights uses it),
                  load_torch_state_dict (torchvision-style state dicts), TORCHVISION_VGG16
    efficientnet  EfficientNet-Lite0 (efficientnet_lite0), with its ImageNet weights
    imagenet_utils  preprocess_input, decode_predictions and the 1000 ImageNet class names
    geron         Géron's ch. 14 nets: fashion_mnist_convnet, lenet5, alexnet, inception_module, googlenet,
                  resnet34, geron_resnet50 (the chapter's bottleneck ResNet-50, SE variants),
                  geron_xception, squeeze_excite, localization_model (class + box heads),
                  fcn_segmentation (FCN-8s-style skips), bilinear_upsampling_kernel
"""

from .book_models import (  # noqa: F401
    cats_vs_dogs_convnet, mini_xception, mnist_convnet, mnist_convnet_first_edition_base, residual_block,
    residual_convnet, segmentation_net,
)
from .vgg16 import vgg16  # noqa: F401
from .xception import xception, xception as Xception  # noqa: F401
from .resnet50 import resnet50, resnet50 as ResNet50, torchvision_resnet50  # noqa: F401
from .mobilenet_v2 import mobilenet_v2, mobilenet_v2 as MobileNetV2  # noqa: F401
from .weight_import import TORCHVISION_VGG16, load_keras_weights, load_torch_state_dict  # noqa: F401
from .geron import (  # noqa: F401
    alexnet, bilinear_upsampling_kernel, fashion_mnist_convnet, fcn_segmentation, googlenet, inception_module, lenet5,
    localization_model, resnet34, squeeze_excite,
)
from .geron import resnet50 as geron_resnet50, xception as geron_xception  # noqa: F401
from . import imagenet_utils  # noqa: F401
from .efficientnet import efficientnet_lite0  # noqa: F401
from .imagenet_utils import decode_predictions  # noqa: F401
