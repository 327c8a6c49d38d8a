"""Command line: python -m convlab COMMAND.

Commands:
  train mnist         the books' MNIST convnet on the embedded real digits (the main job)
  train segmentation  the Conv2DTranspose segmentation net on the synthetic shapes masks
  train xception      the mini Xception on the synthetic shapes classification task
  visualize MODEL IMAGE --out DIR
                      activation grids, filter weights, filter patterns, Grad-CAM for one image
  demo                run every kernel family on a drawn image and check a gradient
  info                the build: native modules, threads, CUDA availability

`python -m convlab COMMAND --help` lists a command's options.
"""

import argparse
import sys


def _info(argv) -> int:
    import convlab
    from convlab import _cpu

    print(f"convlab {convlab.__version__}")
    print(f"CPU kernels: convlab._cpu, {_cpu.num_threads()} OpenMP threads")
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
}


def _train(argv) -> int:
    parser = argparse.ArgumentParser(prog="python -m convlab train", description="Train one of the books' models.")
    parser.add_argument("job", choices=sorted(_TRAIN_DEFAULTS), help="which model and data")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--epochs", type=int, default=None, help="default: mnist 5, segmentation 30, xception 15")
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
    job = getattr(jobs, f"train_{args.job}")
    job(epochs=args.epochs or epochs, batch_size=args.batch_size or batch_size, device=args.device,
        out=args.out or f"convlab-runs/{args.job}", seed=args.seed, verbose=0 if args.quiet else 1)
    return 0


def _visualize(argv) -> int:
    from convlab.viz import cli

    return cli.main(argv)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"train": _train, "visualize": _visualize, "demo": None, "info": _info}
    if not argv or argv[0] not in commands:
        print(__doc__)
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    command, rest = argv[0], argv[1:]
    if command == "demo":
        from convlab import demo

        return demo.main(rest)
    return commands[command](rest)


if __name__ == "__main__":
    raise SystemExit(main())
