"""ImageNet inputs and outputs, as keras.applications.imagenet_utils has them.

preprocess_input(x, mode)   pixels (0..255, RGB, channels last) -> what a pretrained model was trained on
decode_predictions(preds)   (samples, 1000) class probabilities -> [(wnid, name, probability), ...] per sample

The 1000 class names ship with convlab (imagenet_classes.json beside this file), in the
format of Keras' imagenet_class_index.json: {"0": ["n01440764", "tench"], ...}, classes in
the order of their sorted WordNet ids (the order every ImageNet-1k model uses), each named
by the first lemma of its synset with spaces as underscores, as Keras names them
("Egyptian_cat"; "crane" and "maillot" name two classes each, as in Keras). They were
built from timm 1.0.31's data files (Apache-2.0): timm/data/_info/imagenet_synsets.txt for
the ids and imagenet_synset_to_lemma.txt for the lemmas.
"""

import json
from importlib import resources

import numpy as np

__all__ = ["preprocess_input", "decode_predictions", "class_names", "PREPROCESSING_MODES"]

# mode -> what it does to RGB pixels in 0..255
PREPROCESSING_MODES = {
    "caffe": "RGB -> BGR, minus the ImageNet mean per channel (103.939, 116.779, 123.68); no scaling",
    "tf": "x / 127.5 - 1: pixels in [-1, 1]",
    "torch": "x / 255, minus mean (0.485, 0.456, 0.406), divided by std (0.229, 0.224, 0.225) per channel",
    "efficientnet_lite0": "(x - 127) / 128, as EfficientNet-Lite was trained (MEAN_RGB 127, STDDEV_RGB 128)",
}
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)

_class_index = None


def preprocess_input(x, data_format=None, mode="caffe"):
    """Pixels made into a pretrained model's input (a new array; x is not changed).

    x: RGB pixels in 0..255, channels last: (h, w, 3) or (batch, h, w, 3), a numpy array, a
    list or a convlab Tensor. Integer pixels become float32; float64 stays float64.
    mode: one of PREPROCESSING_MODES, the model's own ("efficientnet_lite0" for
    efficientnet_lite0; Keras' default "caffe" is VGG16's and ResNet50's).
    data_format: None or "channels_last" (convlab's only layout).
    """
    from ..autograd import Tensor

    if mode not in PREPROCESSING_MODES:
        raise ValueError(f"preprocess_input: mode must be one of {', '.join(map(repr, PREPROCESSING_MODES))}, "
                         f"got {mode!r}")
    if data_format not in (None, "channels_last"):
        raise ValueError(f"preprocess_input: data_format must be None or 'channels_last' (NHWC), got {data_format!r}")
    array = x.numpy() if isinstance(x, Tensor) else np.asarray(x)
    if array.dtype.kind not in "fiub":
        raise TypeError(f"preprocess_input: x must hold numbers (pixels in 0..255), got dtype {array.dtype}")
    if array.ndim not in (3, 4) or array.shape[-1] != 3:
        raise ValueError(
            f"preprocess_input: x must be RGB images (h, w, 3) or (batch, h, w, 3), got shape {array.shape}")
    dtype = array.dtype if array.dtype.kind == "f" else np.dtype(np.float32)
    array = array.astype(dtype)  # a copy, never the caller's array
    if mode == "efficientnet_lite0":
        return (array - dtype.type(127)) / dtype.type(128)
    if mode == "tf":
        return array / dtype.type(127.5) - dtype.type(1)
    if mode == "torch":
        return (array / dtype.type(255) - np.asarray(_TORCH_MEAN, dtype)) / np.asarray(_TORCH_STD, dtype)
    return array[..., ::-1] - np.asarray(_CAFFE_MEAN_BGR, dtype)  # caffe


def class_names():
    """The 1000 ImageNet classes as a list of (wnid, name), index = class number."""
    global _class_index
    if _class_index is None:
        text = resources.files(__package__).joinpath("imagenet_classes.json").read_text(encoding="utf-8")
        index = json.loads(text)
        if sorted(index, key=int) != [str(i) for i in range(1000)]:
            raise RuntimeError("convlab/applications/imagenet_classes.json must map '0'..'999' to [wnid, name]; "
                               "the installed file is damaged")
        _class_index = [tuple(index[str(i)]) for i in range(1000)]
    return list(_class_index)


def decode_predictions(preds, top=5):
    """The top classes of each sample: a list (one per sample) of lists of
    (wnid, class name, probability), most probable first, as Keras returns them.

    preds: (samples, 1000) scores (numpy array or convlab Tensor), e.g. a model's softmax output.
    top: how many classes per sample, 1..1000.
    """
    from ..autograd import Tensor

    array = preds.numpy() if isinstance(preds, Tensor) else np.asarray(preds)
    if array.ndim != 2 or array.shape[1] != 1000:
        raise ValueError(f"decode_predictions: preds must be a batch of ImageNet predictions of shape "
                         f"(samples, 1000), got shape {array.shape}")
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or not 1 <= top <= 1000:
        raise ValueError(f"decode_predictions: top must be an int in 1..1000, got {top!r}")
    names = class_names()
    results = []
    for row in array:
        best = np.argsort(-row, kind="stable")[:int(top)]  # ties keep the lower class index first
        results.append([(names[i][0], names[i][1], float(row[i])) for i in best])
    return results
