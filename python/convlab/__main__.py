"""Command line: python -m convlab COMMAND.

Commands:
  train mnist         the books' MNIST convnet on the embedded real digits (the main job)
  train segmentation  the Conv2DTranspose segmentation net on the synthetic shapes masks
  train xception      the mini Xception on the synthetic shapes classification task
  train detection     a YOLO-style grid detector on multi-shape scenes; prints mAP@0.5
  train localization  Géron's class + box model on the shapes; prints accuracy and mean box IoU
  train fcn           an FCN-8s-style segmentation net (skip connections) on the shapes trimaps
  train transfer      the pretrained EfficientNet-Lite0 on few labels: from scratch vs feature
                      extraction vs fine-tuning; prints the three test accuracies
  classify IMAGE...   the pretrained EfficientNet-Lite0's top ImageNet classes for each image
  visualize MODEL IMAGE --out DIR
                      activation grids, filter weights, filter patterns, Grad-CAM for one image
  demo                run every kernel family on a drawn image and check a gradient
  info                the build: native modules, threads, CUDA availability

`python -m convlab COMMAND --help` lists a command's options. An error prints one line,
`convlab: error: ...`, and exits with status 2; `--debug` (or CONVLAB_DEBUG=1) shows the
traceback instead.
"""

import sys

from convlab._command_line import ArgumentParser, CommandLineError, debug_requested, one_line


def _info(argv) -> int:
    ArgumentParser(prog="python -m convlab info", description="What was built and whether CUDA runs here.") \
        .parse_args(argv)
    import convlab
    from convlab import _cpu

    print(f"convlab {convlab.__version__}")
    print(f"CPU kernels: convlab._cpu, {_cpu.num_threads()} OpenMP threads")
    tuning = getattr(_cpu, "malloc_tuning", {})
    print("memory allocator: " + (", ".join(f"{k}={v >> 20} MiB" for k, v in tuning.items())
                                  if tuning else "glibc defaults (CONVLAB_MALLOC_TUNING=0, or not glibc)"))
    print("CUDA kernels on the CPU: convlab._cuda_host (convlab.kernels.host_executor())")
    try:
        from convlab import _cuda
        print(f"CUDA kernels: convlab._cuda, built for sm_{_cuda.cuda_architectures}")
    except ImportError:
        print("CUDA kernels: not built (no nvcc when convlab was installed, or CONVLAB_CUDA=OFF)")
    status = convlab.cuda_available()
    print(f"CUDA: {'available ' + str(status.devices) if status else 'not available: ' + status.reason}")
    return 0


_TRAIN_DEFAULTS = {  # job: (epochs, batch size)
    "mnist": (5, 64),
    "segmentation": (30, 32),
    "xception": (15, 32),
    "detection": (12, 32),
    "localization": (15, 32),
    "fcn": (30, 32),
    "transfer": (20, 32),
}


def _train(argv) -> int:
    parser = ArgumentParser(prog="python -m convlab train", description="Train one of the books' models.")
    parser.add_argument("job", choices=sorted(_TRAIN_DEFAULTS), help="which model and data")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--epochs", type=int, default=None,
                        help="default: " + ", ".join(f"{job} {e}" for job, (e, _) in _TRAIN_DEFAULTS.items()))
    parser.add_argument("--batch-size", type=int, default=None, help="default: mnist 64, others 32")
    parser.add_argument("--out", default=None, help="output directory (default convlab-runs/JOB)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    for name in ("epochs", "batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    import convlab
    from convlab import jobs

    if args.device == "cuda":
        status = convlab.cuda_available()
        if not status:
            parser.error(f"--device cuda: {status.reason}")
    epochs, batch_size = _TRAIN_DEFAULTS[args.job]
    if args.job == "detection":
        from convlab.detection_job import train_detection

        train_detection(epochs=args.epochs or epochs, batch_size=args.batch_size or batch_size,
                        device=args.device, out=args.out or "convlab-runs/detection", seed=args.seed,
                        quiet=args.quiet)
        return 0
    if args.job in ("localization", "fcn"):
        from convlab import localization_job

        getattr(localization_job, f"train_{args.job}")(
            epochs=args.epochs or epochs, batch_size=args.batch_size or batch_size, device=args.device,
            out=args.out or f"convlab-runs/{args.job}", seed=args.seed, quiet=args.quiet)
        return 0
    if args.job == "transfer":
        from convlab.transfer_job import train_transfer

        train_transfer(epochs=args.epochs or epochs, batch_size=args.batch_size or batch_size, device=args.device,
                       out=args.out or "convlab-runs/transfer", seed=args.seed, verbose=0 if args.quiet else 1)
        return 0
    job = getattr(jobs, f"train_{args.job}")
    job(epochs=args.epochs or epochs, batch_size=args.batch_size or batch_size, device=args.device,
        out=args.out or f"convlab-runs/{args.job}", seed=args.seed, verbose=0 if args.quiet else 1)
    return 0


def _visualize(argv) -> int:
    from convlab.viz import cli

    return cli.main(argv)


def _demo(argv) -> int:
    from convlab import demo

    return demo.main(argv)


def _classify(argv) -> int:
    from convlab import classify

    return classify.main(argv)


COMMANDS = {"train": _train, "classify": _classify, "visualize": _visualize, "demo": _demo,
            "info": _info}


def main(argv=None) -> int:
    """Run one command; an error prints `convlab: error: ...` (one line) and returns 2, unless
    --debug or CONVLAB_DEBUG asks for the exception and its traceback."""
    debug, argv = debug_requested(list(sys.argv[1:] if argv is None else argv))
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    try:
        if argv[0] not in COMMANDS:
            raise CommandLineError(f"unknown command {argv[0]!r}; the commands are {', '.join(COMMANDS)} "
                                   "(python -m convlab --help)")
        return COMMANDS[argv[0]](argv[1:])
    except Exception as error:
        if debug:
            raise
        print(f"convlab: error: {one_line(error)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
