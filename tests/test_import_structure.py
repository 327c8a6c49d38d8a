"""How convlab's modules depend on each other, and the names the docs rely on.

- convlab.saving builds on convlab.models (it writes serialize_model's config and rebuilds
  models with deserialize_model); models reaches saving only when a model is saved or
  loaded, never while it is being imported. Checked in fresh interpreters and on the source.
- Every op Function (convlab.ops) is named after the op it implements, "<Op>Function", so
  none shares a name with a layer (ops.conv's Conv2dFunction, layers' Conv2D).
- The README's "Anatomy of one op" cites only files and names that exist.
"""

import ast
import importlib
import os
import pkgutil
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import convlab
import convlab.layers
import convlab.ops
from convlab.autograd import Function

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIR = Path(convlab.__file__).resolve().parent  # the convlab these tests import


# --------------------------------------------------------------------------- fresh interpreters


def run_fresh(code):
    """Run `code` in a new interpreter that imports the same convlab as this one; its stdout."""
    search_path = [str(PACKAGE_DIR.parent)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(search_path))
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 0, f"the fresh interpreter failed:\n{result.stderr}"
    return result.stdout


# convlab/__init__.py imports every module, so `import convlab.models` would load saving
# whatever models imports. Registering a bare package first runs only the imports of the
# module asked for and of what it imports in turn.
BARE_PACKAGE = f"""
    import sys, types
    package = types.ModuleType("convlab")
    package.__path__ = [{str(PACKAGE_DIR)!r}]
    sys.modules["convlab"] = package
"""


def test_importing_models_does_not_import_saving():
    output = run_fresh(BARE_PACKAGE + """
    import convlab.models
    print("saving loaded with models:", "convlab.saving" in sys.modules)
    import convlab.saving
    print("one deserialize_model:", convlab.saving.deserialize_model is convlab.models.deserialize_model)
    """)
    assert "saving loaded with models: False" in output
    assert "one deserialize_model: True" in output


def test_importing_saving_first_loads_models_completely():
    output = run_fresh(BARE_PACKAGE + """
    import convlab.saving
    print("models loaded by saving:", "convlab.models" in sys.modules)
    import convlab.models
    print("one serialize_model:", convlab.saving.serialize_model is convlab.models.serialize_model)
    print("Model.from_config:", callable(getattr(convlab.models.Model, "from_config", None)))
    """)
    assert "models loaded by saving: True" in output
    assert "one serialize_model: True" in output
    assert "Model.from_config: True" in output


@pytest.mark.parametrize("first", ["models", "saving"])
def test_a_fresh_interpreter_saves_and_loads_whichever_module_it_imports_first(first, tmp_path):
    # Model.save and load_model reach saving lazily: a save and load after importing only
    # one of the two modules (with the whole package) gives back the weights that were saved.
    output = run_fresh(f"""
    import numpy as np
    import convlab.{first}
    from convlab import layers
    from convlab.models import Sequential, load_model

    model = Sequential([layers.Input(shape=(3,)), layers.Dense(2)])
    model.save({str(tmp_path / "model.keras")!r})
    loaded = load_model({str(tmp_path / "model.keras")!r})
    same = all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(model.weights, loaded.weights))
    print("weights round-trip:", len(loaded.weights) == 2 and same)
    """)
    assert "weights round-trip: True" in output


# --------------------------------------------------------------------------- the source


def imports(source, package="convlab"):
    """(import time, inside functions): the absolute names that the `import` statements of a
    module of `package` refer to, for `from m import n` both m and m.n. Import time means
    anywhere but inside a function: the module body, if and try blocks, class bodies."""
    at_import_time, in_functions = set(), set()

    def names(node):
        if isinstance(node, ast.Import):
            return {alias.name for alias in node.names}
        base = node.module or ""
        if node.level:
            parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            base = f"{parent}.{base}" if base else parent
        return {base} | {f"{base}.{alias.name}" for alias in node.names}

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                (in_functions if inside else at_import_time).update(names(child))
            visit(child, inside)

    visit(ast.parse(source), False)
    return at_import_time, in_functions


def refers_to(names, module):
    return any(name == module or name.startswith(module + ".") for name in names)


def test_imports_parser_tells_import_time_from_function_level():
    source = textwrap.dedent("""
        from . import layers
        from .models import serialize_model
        import numpy as np
        if True:
            from . import training
        class C:
            from .utils import set_seed
            def method(self):
                from . import saving
        def function():
            import json
    """)
    at_import_time, in_functions = imports(source)
    assert {"convlab.layers", "convlab.models.serialize_model", "numpy", "convlab.training",
            "convlab.utils.set_seed"} <= at_import_time
    assert in_functions == {"convlab", "convlab.saving", "json"}
    assert not refers_to(at_import_time, "convlab.saving")


def test_models_has_no_import_time_import_of_saving():
    at_import_time, _ = imports((PACKAGE_DIR / "models.py").read_text())
    assert not refers_to(at_import_time, "convlab.saving"), sorted(at_import_time)


def test_saving_imports_models_at_the_top_only():
    # The dependency is written once, where a reader looks for it: at the top of saving.py.
    at_import_time, in_functions = imports((PACKAGE_DIR / "saving.py").read_text())
    assert refers_to(at_import_time, "convlab.models")
    assert not refers_to(in_functions, "convlab.models"), sorted(in_functions)


# --------------------------------------------------------------------------- op Function names


def snake_case(camel):
    return re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower()


def op_functions():
    """(module, class) for every Function subclass defined in a convlab.ops module."""
    found = []
    for info in pkgutil.iter_modules(convlab.ops.__path__):
        module = importlib.import_module(f"convlab.ops.{info.name}")
        found += [(module, value) for value in vars(module).values()
                  if isinstance(value, type) and issubclass(value, Function) and value.__module__ == module.__name__]
    return found


def test_op_functions_are_named_after_their_op_and_apart_from_the_layers():
    layer_names = {name for name, value in vars(convlab.layers).items() if isinstance(value, type)}
    functions = op_functions()
    assert len(functions) >= 40  # every ops module was found
    for module, cls in functions:
        name = cls.__name__
        assert name.endswith("Function"), f"{module.__name__}.{name}: op Functions are named '<Op>Function'"
        assert name not in layer_names, f"{module.__name__}.{name} shares its name with a layer"
        op = snake_case(name[: -len("Function")])  # Conv2dTranspose -> conv2d_transpose
        public = set(module.__all__)
        assert op in public or any(op.startswith(f + "_") for f in public), (
            f"{module.__name__}.{name}: no op {op!r} (or {op!r} as a variant of one) among {sorted(public)}")


def test_snake_case_of_the_op_function_names():
    assert [snake_case(n) for n in ("Conv2dTranspose", "GlobalAvgPool2d", "Relu6", "BatchNormTraining", "ToDevice")] \
        == ["conv2d_transpose", "global_avg_pool2d", "relu6", "batch_norm_training", "to_device"]


# --------------------------------------------------------------------------- README: anatomy of one op

ANATOMY_HEADING = "## Anatomy of one op"
FILE_SUFFIXES = (".py", ".cpp", ".h", ".cu", ".cuh", ".md", ".toml", ".txt")
NAME = re.compile(r"([A-Za-z_]\w*(?:(?:\.|::)[A-Za-z_]\w*)*)(?:\(\))?")


def section(markdown, heading):
    """The text under `heading` (a line of its own) up to the next level-2 heading, or None."""
    lines = markdown.splitlines()
    if heading not in lines:
        return None
    start = lines.index(heading) + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
    return "\n".join(lines[start:end])


def citation_problems(text, root):
    """What is wrong with the `inline code` of `text` (fenced blocks are excerpts, not read):
    a file path (a name with a source suffix, from the repository root, or a folder ending in
    /) that does not exist, or a name (`ops.conv2d`, `cpu::conv2d_forward`, `launch()`) one of
    whose parts appears as a word in none of the files the text cites."""
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    spans = re.findall(r"`([^`\n]+)`", prose)
    paths = [s for s in spans if s.endswith(FILE_SUFFIXES) or s.endswith("/")]
    problems = [f"`{p}`: no such file or folder in the repository" for p in paths if not (root / p).exists()]
    words = set()
    for p in paths:
        if (root / p).is_file():
            words.update(re.findall(r"[A-Za-z_]\w*", (root / p).read_text(errors="replace")))
    for span in spans:
        match = NAME.fullmatch(span)
        if span in paths or not match:
            continue
        missing = [part for part in re.split(r"\.|::", match.group(1)) if part not in words]
        if missing:
            problems.append(f"`{span}`: {', '.join(missing)} appears in none of the cited files")
    return problems


def test_citation_check_reports_missing_files_and_names():
    text = textwrap.dedent("""
        `python/convlab/ops/conv.py` defines `conv2d` and `Conv2dFunction.backward`, and
        `csrc/cpu/conv2d.cpp` has `cpu::conv2d_forward` (a "same" `(kh, kw)` is not a name).
        `python/convlab/ops/no_such_op.py` and `csrc/cpu/` then `conv2d_sideways()`.

        ```python
        not_checked_inside_a_fence()
        ```
    """)
    assert citation_problems(text, ROOT) == [
        "`python/convlab/ops/no_such_op.py`: no such file or folder in the repository",
        "`conv2d_sideways()`: conv2d_sideways appears in none of the cited files",
    ]


def test_readme_anatomy_of_one_op_cites_existing_files_and_names():
    readme = (ROOT / "README.md").read_text()
    text = section(readme, ANATOMY_HEADING)
    if text is None:
        pytest.skip(f"README.md has no {ANATOMY_HEADING!r} section")
    assert "`csrc/cpu/conv2d.cpp`" in text and "`python/convlab/ops/conv.py`" in text
    assert citation_problems(text, ROOT) == []
