"""The CUDA kernels fit the GPU: no local-memory spills, shared memory within the limit.

The build compiles every .cu with ptxas' resource report (`-Xptxas -v`) and installs the
reports as convlab/cuda_resources.txt (csrc/cuda/capture_ptxas.py). This needs no GPU,
only nvcc at build time; without a CUDA build the tests skip with that reason.
"""

import importlib.resources
import re

import pytest

import convlab


def _report_text():
    try:
        import convlab._cuda  # noqa: F401
    except ImportError as error:
        pytest.skip(f"convlab was built without its CUDA module (no nvcc at install time): {error}")
    path = importlib.resources.files("convlab") / "cuda_resources.txt"
    if not path.is_file():
        pytest.fail("convlab._cuda is installed but its ptxas report cuda_resources.txt is not")
    return path.read_text()


def parse_ptxas_report(text):
    """{mangled kernel name: {'stack', 'spill_stores', 'spill_loads', 'registers', 'smem'}}."""
    kernels = {}
    current = None
    for line in text.splitlines():
        match = re.search(r"Function properties for (\S+)", line)
        if match:
            current = kernels.setdefault(match.group(1), {"smem": 0})
            continue
        if current is None:
            continue
        match = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if match:
            current["stack"], current["spill_stores"], current["spill_loads"] = map(int, match.groups())
            continue
        match = re.search(r"Used (\d+) registers", line)
        if match:
            current["registers"] = int(match.group(1))
            smem = re.search(r"(\d+) bytes smem", line)
            current["smem"] = int(smem.group(1)) if smem else 0
            current = None
    return kernels


def test_parser_reads_a_ptxas_report():
    text = """ptxas info    : Compiling entry function '_Z3fooPf' for 'sm_90'
ptxas info    : Function properties for _Z3fooPf
    8 bytes stack frame, 4 bytes spill stores, 12 bytes spill loads
ptxas info    : Used 40 registers, used 1 barriers, 2048 bytes smem, 400 bytes cmem[0]
ptxas info    : Function properties for _Z3barPf
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 12 registers, used 0 barriers, 380 bytes cmem[0]
"""
    assert parse_ptxas_report(text) == {
        "_Z3fooPf": {"stack": 8, "spill_stores": 4, "spill_loads": 12, "registers": 40, "smem": 2048},
        "_Z3barPf": {"stack": 0, "spill_stores": 0, "spill_loads": 0, "registers": 12, "smem": 0},
    }


@pytest.fixture(scope="module")
def kernels():
    kernels = parse_ptxas_report(_report_text())
    assert kernels, "cuda_resources.txt lists no kernel"
    return kernels


# One block program per launcher at least: the struct names the .cuh files define appear in
# the mangled names of run_block_program<...> (csrc/cuda/device_runner.cuh).
FAMILIES = ["Conv2d", "Depthwise", "Pool", "BatchNorm"]


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_is_compiled_in_float_and_double(kernels, family):
    names = [name for name in kernels if family in name]
    assert names, f"no {family} kernel in the ptxas report"
    # Itanium mangling: float is 'f', double is 'd' as the last template argument.
    assert any(re.search(r"I[fd]EE", n) for n in names)
    assert any("IfEE" in n for n in names) and any("IdEE" in n for n in names), names


def test_no_kernel_spills_to_local_memory(kernels):
    spilling = {name: k for name, k in kernels.items() if k["spill_stores"] or k["spill_loads"]}
    assert not spilling, f"kernels that spill registers to local memory: {spilling}"


def test_no_kernel_keeps_a_stack_frame(kernels):
    """A stack frame means an array indexed at run time went to local memory."""
    with_stack = {name: k["stack"] for name, k in kernels.items() if k["stack"]}
    assert not with_stack, f"kernels with a local-memory stack frame: {with_stack}"


def test_static_shared_memory_and_registers_within_the_limits(kernels):
    for name, k in kernels.items():
        assert k["smem"] <= 48 * 1024, f"{name}: {k['smem']} bytes of static shared memory"
        assert k["registers"] <= 255, f"{name}: {k['registers']} registers"


def test_report_covers_the_architecture_the_module_was_built_for(kernels):
    from convlab import _cuda

    text = _report_text()
    for arch in str(_cuda.cuda_architectures).split(";"):
        assert f"sm_{arch.strip()}" in text, f"no ptxas entry for sm_{arch}"


def test_cuda_module_binds_every_kernel_the_cpu_module_has():
    from convlab import _cpu, _cuda_host

    try:
        from convlab import _cuda
    except ImportError as error:
        pytest.skip(f"convlab was built without its CUDA module: {error}")
    kernel_names = [name for name in convlab.kernels.__all__
                    if hasattr(_cpu, name)]
    assert len(kernel_names) >= 19
    for name in kernel_names:
        assert hasattr(_cuda, name) and hasattr(_cuda_host, name), name
