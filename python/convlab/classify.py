"""`python -m convlab classify IMAGE [IMAGE ...]`: what a pretrained ImageNet model sees in photos.

For each image it prints the top classes with their probabilities, the way the books use
a pretrained convnet (Chollet 2nd ed. 9.4.3, 1st ed. 5.4.3):

    image = load_img(path, target_size=(224, 224))     # pillow, nearest-neighbour resize, as keras.utils does
    x = preprocess_input(img_to_array(image)[None])    # the model's own preprocessing
    decode_predictions(model.predict(x), top=5)

and with --grad-cam it also draws the books' Grad-CAM overlay of the top class: the heatmap
of the model's last feature map (EfficientNet-Lite0: top_activation, 7x7x1280, the
layer after the last conv and its batch norm) in the jet colormap, over the full-size photo.

    python -m convlab classify cat.jpg coffee.png --top 3
    python -m convlab classify cat.jpg --grad-cam cat_grad_cam.png
"""

import argparse
import os

import numpy as np

__all__ = ["MODELS", "classify", "main"]

# model name -> (builder, preprocessing mode, input size, Grad-CAM layer); all in convlab.applications
MODELS = {
    "efficientnet_lite0": ("efficientnet_lite0", "efficientnet_lite0", (224, 224), "top_activation"),
}


def _build(model_name, weights):
    from . import applications

    builder, _, _, _ = MODELS[model_name]
    return getattr(applications, builder)(weights=weights)


def _model_input(path, model_name):
    from .applications import imagenet_utils
    from .data import img_to_array, load_img

    _, mode, size, _ = MODELS[model_name]
    pixels = img_to_array(load_img(path, target_size=size))
    return imagenet_utils.preprocess_input(pixels[None], mode=mode)


def classify(paths, model_name="efficientnet_lite0", top=5, weights="imagenet", grad_cam_path=None, model=None):
    """[(path, [(wnid, name, probability), ...])] for each image path, most probable first.

    grad_cam_path: with one image, the PNG to write its Grad-CAM overlay to; with several, a
    folder that receives <image name>_grad_cam.png for each. model: an already built model
    (else built from model_name and weights).
    """
    from .applications import imagenet_utils
    from .data import img_to_array, load_img
    from .viz import grad_cam, overlay_heatmap

    if model_name not in MODELS:
        raise ValueError(f"model must be one of {', '.join(sorted(MODELS))}, got {model_name!r}")
    paths = [os.fspath(path) for path in paths]
    if not paths:
        raise ValueError("classify needs at least one image path")
    if model is None:
        model = _build(model_name, weights)
    results = []
    for path in paths:
        x = _model_input(path, model_name)
        probabilities = model.predict(x)
        results.append((path, imagenet_utils.decode_predictions(probabilities, top=top)[0]))
        if grad_cam_path is not None:
            heatmap = grad_cam(model, x, MODELS[model_name][3], class_index=int(np.argmax(probabilities[0])))
            if len(paths) == 1:
                out = os.fspath(grad_cam_path)
            else:
                out = os.path.join(grad_cam_path, os.path.splitext(os.path.basename(path))[0] + "_grad_cam.png")
            overlay_heatmap(img_to_array(load_img(path)), heatmap, path=out)  # over the photo at its own size
    return results


def build_parser(prog="python -m convlab classify"):
    parser = argparse.ArgumentParser(
        prog=prog, description="Classify photos with a pretrained ImageNet model: the top classes and their "
                               "probabilities, and optionally the Grad-CAM overlay of the top class.")
    parser.add_argument("images", nargs="+", help="image files (any format pillow reads)")
    parser.add_argument("--model", choices=sorted(MODELS), default="efficientnet_lite0",
                        help="the pretrained model (default efficientnet_lite0)")
    parser.add_argument("--top", type=int, default=5, help="how many classes to print per image (default 5)")
    parser.add_argument("--weights", default="imagenet",
                        help="'imagenet' (the weights of the convlab[pretrained] extra, the default) or the path "
                             "of a PyTorch state dict file of the same network")
    parser.add_argument("--grad-cam", default=None, metavar="PNG",
                        help="write the Grad-CAM overlay of the top class: a PNG path for one image, a folder "
                             "for several (IMAGE_NAME_grad_cam.png in it)")
    return parser


def main(argv=None, prog="python -m convlab classify") -> int:
    """Parse the command line, classify, print a table per image. Returns the exit status."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if not 1 <= args.top <= 1000:
        parser.error(f"--top must be in 1..1000, got {args.top}")
    for path in args.images:
        if not os.path.isfile(path):
            parser.error(f"image {path!r}: no such file")
    if args.grad_cam is not None and len(args.images) > 1 and os.path.isfile(args.grad_cam):
        parser.error(f"--grad-cam: with {len(args.images)} images it names a folder, and {args.grad_cam!r} is a file")
    try:
        model = _build(args.model, args.weights)
    except (ImportError, OSError, ValueError) as error:  # no weights package; an unreadable or unfitting --weights file
        parser.exit(1, f"{prog}: error: {error}\n")
    several = len(args.images) > 1
    if args.grad_cam is not None and several:
        os.makedirs(args.grad_cam, exist_ok=True)
    for path in args.images:
        grad_cam_path = None
        if args.grad_cam is not None:
            grad_cam_path = (os.path.join(args.grad_cam, os.path.splitext(os.path.basename(path))[0] + "_grad_cam.png")
                             if several else args.grad_cam)
        try:
            ((_, predictions),) = classify([path], args.model, args.top, grad_cam_path=grad_cam_path, model=model)
        except ValueError as error:  # an unreadable image: load_img's message names the file
            parser.exit(1, f"{prog}: error: {error}\n")
        print(path)
        width = max(len(name) for _, name, _ in predictions)
        for rank, (wnid, name, probability) in enumerate(predictions, start=1):
            print(f"  {rank:>2}. {name:<{width}}  {wnid}  {probability:7.2%}")
    if args.grad_cam is not None:
        print(f"Grad-CAM overlay{'s' if len(args.images) > 1 else ''} ({MODELS[args.model][3]}): {args.grad_cam}")
    return 0
