"""The house of DESIGN.md as a test: floors, rooms, no runner borrowing from a runner,
no circles, sizes.

Floors, from the bottom: the leaves (boxes, errors, config, config_values,
config_reference, files, loaders, terminal, and the concepts every phase shares:
devices, stop, checkpoint); teacher_cache/ and student/ (never each other);
pipeline/data/ (which also builds the student for a vocabulary); the rooms
pipeline/{training, evaluation, synth}, side by side and never importing each other (the
runners compose them); the study schema; the phase runners `pipeline/run_*.py`; cli;
__main__.
"""

import ast
import statistics
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "eoid"
LEAVE_FILES = (
    "boxes.py",
    "errors.py",
    "config.py",
    "config_loading.py",
    "config_values.py",
    "config_reference.py",
    "files.py",
    "locks.py",
    "loaders.py",
    "terminal.py",
    "devices.py",
    "stop.py",
    "checkpoint.py",
)
LEAVES = {
    "eoid",
    "eoid.data",
    *(f"eoid.{name.removesuffix('.py')}" for name in LEAVE_FILES),
}
ROOMS = {  # module prefix -> (floor, role); the longest matching prefix wins
    "eoid.teacher_cache": (1, "teacher_cache"),
    "eoid.student": (1, "student"),
    "eoid.pipeline.data": (2, "data"),
    "eoid.pipeline.training": (3, "training"),
    "eoid.pipeline.synth": (3, "synth"),
    "eoid.pipeline.evaluation": (3, "evaluation"),
    "eoid.pipeline.study": (4, "study"),
    "eoid.pipeline.study_plan": (4, "study"),
    "eoid.pipeline.study_tables": (4, "study"),
    "eoid.pipeline.run_": (5, "runner"),
    "eoid.cli": (6, "cli"),
    "eoid.cli_options": (6, "cli"),
    "eoid.cli_cache": (6, "cli"),
    "eoid.cli_evaluate": (6, "cli"),
    "eoid.cli_data": (6, "cli"),
    "eoid.__main__": (7, "main"),
}
# call whole phases
COMPOSITE_RUNNERS = {"eoid.pipeline.run_quickstart", "eoid.pipeline.run_sweep"}


def _module(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    return ".".join(rel.parts).removesuffix(".__init__")


def _place(module: str) -> tuple[float, str]:
    if module in LEAVES or module.startswith("eoid.data."):
        return 0, "leaf"
    for prefix in sorted(ROOMS, key=len, reverse=True):
        if module == prefix or module.startswith(
            prefix if prefix.endswith("_") else prefix + "."
        ):
            return ROOMS[prefix]
    if module == "eoid.pipeline":
        return 2, "data"
    raise AssertionError(f"{module}: not in any room of the house; add it to a room")


def _eoid_imports(path: Path) -> list[str]:
    """Every eoid module `path` imports (relative imports resolved), lazy imports
    included.
    """
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("eoid")]
        elif (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.startswith("eoid")
        ):
            names = [f"{node.module}.{a.name}" for a in node.names]
            found += [n for n in names if _is_module(n)] or [node.module]
    return found


def _is_module(name: str) -> bool:
    rel = Path(*name.split("."))
    return (PACKAGE.parent / rel).with_suffix(".py").is_file() or (
        PACKAGE.parent / rel / "__init__.py"
    ).is_file()


MODULES = sorted(p for p in PACKAGE.rglob("*.py"))
GRAPH = {_module(p): {t for t in _eoid_imports(p) if _is_module(t)} for p in MODULES}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down_and_not_across(path):
    module = _module(path)
    here, here_role = _place(module)
    for target in _eoid_imports(path):
        there, there_role = _place(target)
        assert there < here or there_role == here_role or there == 0, (
            f"{module} imports {target}: an arrow up a floor or across rooms of one"
            " floor"
        )


def test_leaf_modules_import_no_floor():
    for leaf in LEAVE_FILES:
        for target in _eoid_imports(PACKAGE / leaf):
            assert _place(target)[0] == 0, f"{leaf} imports {target}"


def test_no_runner_borrows_from_another_runner():
    for module, targets in GRAPH.items():
        if _place(module)[1] != "runner" or module in COMPOSITE_RUNNERS:
            continue
        borrowed = sorted(t for t in targets if _place(t)[1] == "runner")
        assert not borrowed, (
            f"{module} imports runner(s) {borrowed}: move what they share into a room"
        )


def test_no_import_circles():
    # depth-first search for a back edge; a circle is reported with its modules in order
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for target in sorted(GRAPH.get(module, ())):
            if state.get(target) == 1:
                circle = stack[stack.index(target) :] + [target]
                raise AssertionError("import circle: " + " -> ".join(circle))
            if target not in state:
                visit(target)
        stack.pop()
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module)


def test_files_stay_small_enough_to_read_at_once():
    sizes = {
        p: p.read_text().count("\n") + 1 for p in MODULES if p.name != "__init__.py"
    }
    too_long = sorted(str(p.relative_to(PACKAGE)) for p, n in sizes.items() if n > 400)
    assert not too_long, f"over 400 lines (split by concept): {too_long}"
    assert statistics.median(sizes.values()) <= 200


def test_no_grab_bag_module_names():
    banned = ("util", "helper", "misc", "common", "tools")
    for path in MODULES:
        assert not path.stem.startswith(banned), (
            f"{path.name}: name the concept instead"
        )
