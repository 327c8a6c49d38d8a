"""Command line: python -m convlab COMMAND.

Commands:
  demo    run every kernel family on a drawn image and check a gradient
  info    the build: native modules, threads, CUDA availability
"""

import sys


def _info(argv) -> int:
    import convlab
    from convlab import _cpu

    print(f"convlab {convlab.__version__}")
    print(f"CPU kernels: convlab._cpu, {_cpu.num_threads()} OpenMP threads")
    status = convlab.cuda_available()
    print(f"CUDA: {'available ' + str(status.devices) if status else 'not available: ' + status.reason}")
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"demo": "convlab.demo", "info": None}
    if not argv or argv[0] not in commands:
        print(__doc__)
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    command, rest = argv[0], argv[1:]
    if command == "info":
        return _info(rest)
    from convlab import demo

    return demo.main(rest)


if __name__ == "__main__":
    raise SystemExit(main())
