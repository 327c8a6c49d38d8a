"""Build helper for the CUDA module's resource report.

As a compiler launcher (CMAKE_CUDA_COMPILER_LAUNCHER): runs the compile command it is
given, passes its output through, and writes what the compiler printed on stderr (ptxas'
`-v` report: registers, spill stores/loads, local memory and shared memory of every
kernel) to `<object>.ptxas.txt` beside the object file.

With --join OUT OBJECT...: concatenates the reports of the given objects into OUT, which
the build installs as convlab/cuda_resources.txt.
"""

import os
import subprocess
import sys


def join(out, objects):
    with open(out + ".tmp", "w") as target:
        for obj in objects:
            report = obj + ".ptxas.txt"
            if not obj.endswith(".o") or not os.path.exists(report):
                continue
            target.write(f"# {os.path.basename(obj)}\n")
            with open(report) as source:
                target.write(source.read())
    os.replace(out + ".tmp", out)


def compile_and_capture(command):
    result = subprocess.run(command, stderr=subprocess.PIPE, text=True)
    sys.stderr.write(result.stderr)
    if result.returncode == 0 and "-o" in command:
        obj = command[command.index("-o") + 1]
        if obj.endswith(".o"):
            with open(obj + ".ptxas.txt", "w") as report:
                report.write(result.stderr)
    return result.returncode


if __name__ == "__main__":
    if sys.argv[1] == "--join":
        join(sys.argv[2], sys.argv[3:])
        sys.exit(0)
    sys.exit(compile_and_capture(sys.argv[1:]))
