"""convlab: a convnet engine you can read.

Hand-written C++ (and CUDA) kernels for conv2d, transposed conv, depthwise and separable
conv, pooling and batch normalization, with their backward passes, under a thin autograd
and Keras-style layers layer; Keras' training loop (compile/fit), safe saving, image data
utilities and the books' interpretation tools (convlab.viz) on top.
"""

from ._version import __version__
from ._backend import cuda_available
from . import kernels
from . import testing

# --- autograd, ops, layers and models (python layer above the kernels) ---
from .autograd import Tensor, Variable, GradientTape, device, no_grad  # noqa: E402
from . import utils, initializers, activations, ops, layers, models, applications  # noqa: E402
from .models import Model, Sequential, load_model  # noqa: E402
from .layers import Input  # noqa: E402

# --- training, data and interpretation ---
from . import losses, metrics, optimizers, callbacks, saving  # noqa: E402
from . import data, datasets, viz  # noqa: E402
