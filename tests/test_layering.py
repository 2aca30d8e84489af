"""The floors of DESIGN.md as a test: imports only point down, never between teacher_cache and student."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "eoid"
LEAVES = {"eoid.boxes", "eoid.errors", "eoid.config", "eoid.data"}
FLOOR = {"__main__": 4, "cli": 3, "pipeline": 2, "teacher_cache": 1, "student": 1}


def _floor(module: str) -> tuple[int, str]:
    parts = module.split(".")
    if module in LEAVES or (len(parts) > 1 and f"eoid.{parts[1]}" in LEAVES) or module == "eoid":
        return 0, "leaf"
    return FLOOR[parts[1]], parts[1]


def _eoid_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("eoid")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("eoid"):
            found.append(node.module)
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down_and_not_across(path):
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    module = ".".join(rel.parts).removesuffix(".__init__")
    here, here_role = _floor(module)
    for target in _eoid_imports(path):
        there, there_role = _floor(target)
        assert there < here or (there == here and there_role == here_role) or there == 0, (
            f"{module} imports {target}: an arrow up a floor or across teacher_cache/student")


def test_leaf_modules_import_no_floor():
    for leaf in ("boxes.py", "errors.py", "config.py"):
        for target in _eoid_imports(PACKAGE / leaf):
            assert _floor(target)[0] == 0, f"{leaf} imports {target}"


def test_no_grab_bag_module_names():
    banned = ("util", "helper", "misc", "common", "tools")
    for path in MODULES:
        assert not path.stem.startswith(banned), f"{path.name}: name the concept instead"
