"""Keras-style layers: each owns its weights and calls convlab.ops.

    base             Layer, KerasTensor, Node
    input_layer      Input, InputLayer
    convolutional    Conv2D, Conv2DTranspose, DepthwiseConv2D, SeparableConv2D
    pooling          MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D
    normalization    BatchNormalization
    core             Dense, Activation, Flatten, Dropout, Rescaling, ZeroPadding2D, Lambda
    merging          Add, Concatenate, add, concatenate
    preprocessing    RandomFlip, RandomRotation, RandomZoom, RandomTranslation (data augmentation)
"""

from .base import KerasTensor, Layer, Node  # noqa: F401
from .convolutional import Conv2D, Conv2DTranspose, DepthwiseConv2D, SeparableConv2D  # noqa: F401
from .core import Activation, Dense, Dropout, Flatten, Lambda, Rescaling, ZeroPadding2D  # noqa: F401
from .input_layer import Input, InputLayer  # noqa: F401
from .merging import Add, Concatenate, add, concatenate  # noqa: F401
from .normalization import BatchNormalization  # noqa: F401
from .pooling import AveragePooling2D, GlobalAveragePooling2D, MaxPooling2D  # noqa: F401
from .preprocessing import RandomFlip, RandomRotation, RandomTranslation, RandomZoom  # noqa: F401

# Keras' short aliases
Convolution2D = Conv2D
MaxPool2D = MaxPooling2D
AvgPool2D = AveragePooling2D
GlobalAvgPool2D = GlobalAveragePooling2D
