"""Keras-style layers: each owns its weights and calls convlab.ops.

    base             Layer, KerasTensor, Node
    input_layer      Input, InputLayer
    convolutional    Conv2D, Conv2DTranspose, DepthwiseConv2D, SeparableConv2D
    pooling          MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D, GlobalMaxPooling2D
    normalization    BatchNormalization
    core             Dense, Activation, ReLU, Flatten, Dropout, Rescaling, ZeroPadding2D, Lambda
    merging          Add, Multiply, Concatenate, add, multiply, concatenate
    across_channels  LocalResponseNormalization, DepthMaxPooling (Géron ch. 14)
    residual         ResidualUnit (Géron's ResNet unit; bottleneck and squeeze-excite options)
    preprocessing    RandomFlip, RandomRotation, RandomZoom, RandomTranslation (data augmentation)
    reshaping        Reshape, UpSampling2D (nearest, bilinear), Cropping2D
"""

from .base import KerasTensor, Layer, Node  # noqa: F401
from .convolutional import Conv2D, Conv2DTranspose, DepthwiseConv2D, SeparableConv2D  # noqa: F401
from .core import Activation, Dense, Dropout, Flatten, Lambda, ReLU, Rescaling, ZeroPadding2D  # noqa: F401
from .input_layer import Input, InputLayer  # noqa: F401
from .merging import Add, Concatenate, Multiply, add, concatenate, multiply  # noqa: F401
from .normalization import BatchNormalization  # noqa: F401
from .pooling import AveragePooling2D, GlobalAveragePooling2D, GlobalMaxPooling2D, MaxPooling2D  # noqa: F401
from .preprocessing import RandomFlip, RandomRotation, RandomTranslation, RandomZoom  # noqa: F401
from .across_channels import DepthMaxPooling, LocalResponseNormalization  # noqa: F401
from .residual import ResidualUnit  # noqa: F401
from .reshaping import Cropping2D, Reshape, UpSampling2D  # noqa: F401

# Keras' short aliases
Convolution2D = Conv2D
MaxPool2D = MaxPooling2D
AvgPool2D = AveragePooling2D
GlobalAvgPool2D = GlobalAveragePooling2D
GlobalMaxPool2D = GlobalMaxPooling2D
