"""convlab: a convnet engine you can read.

Hand-written C++ (and CUDA) kernels for conv2d, transposed conv, depthwise and separable
conv, pooling and batch normalization, with their backward passes, under a thin autograd
and Keras-style layers layer.
"""

from ._version import __version__
from ._backend import cuda_available
from . import kernels
from . import testing

# --- autograd, ops, layers and models (python layer above the kernels) ---
