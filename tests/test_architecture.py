"""The import rules of docs/ARCHITECTURE.md, enforced on every module of the package.

Each import statement (module level or inside a function) is read with ``ast``; the rules are
about where code may reach, so a lazy import counts like any other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "lightmycells"

# Which of the package's parts each part may import (besides itself). The picture in
# docs/ARCHITECTURE.md is drawn from this table.
ALLOWED: dict[str, set[str]] = {
    "vocab": set(),
    "cpus": set(),
    "io": {"vocab"},
    "engine": {"io", "vocab", "cpus"},
    "run": {"engine", "io", "vocab", "cpus"},
    "eval": {"engine", "io", "vocab", "cpus"},
    "data": {"engine", "io", "vocab"},
    "simulate": {"data", "io", "vocab"},
    "train": {"data", "engine", "eval", "io", "simulate", "vocab", "cpus"},
    "__init__": set(),
    # the command names DESIGN.md promises: python -m lightmycells.evaluate / .export
    "evaluate": {"eval"},
    "export": {"train"},
    "finetune": {"train"},
}
# Entry points at the repository root: the Grand-Challenge template expects them there.
ENTRY_POINTS = {"inference.py": {"run", "engine", "io", "vocab"},
                "process.py": {"engine", "io", "vocab"}}
# Third-party modules that only one part may import.
CONFINED = {"torch": {"train"}, "onnx": {"train"}, "onnxruntime": {"engine/runtime", "train"}}


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "lightmycells":  # from lightmycells import io, vocab
                names += [f"lightmycells.{alias.name}" for alias in node.names]
            else:
                names.append(node.module)
    return names


def _part(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _package_part(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if parts[0] == "lightmycells" and len(parts) > 1 else None


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_belongs_to_a_known_part():
    unknown = {_part(p) for p in MODULES} - set(ALLOWED)
    assert not unknown, f"parts missing from the import rules: {unknown}"


def _violations(path: Path, part: str, rel: str) -> list[str]:
    broken = []
    for name in _imports(path):
        target = _package_part(name)
        if target is not None and target != part and target not in ALLOWED[part]:
            broken.append(f"{name} (part {part!r} may import {sorted(ALLOWED[part])})")
        top = name.split(".")[0]
        if top in CONFINED and not any(rel == c or rel.startswith(c + "/") or part == c
                                       for c in CONFINED[top]):
            broken.append(f"{name} (only {sorted(CONFINED[top])} may import {top})")
    return broken


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_package_imports_follow_the_rules(path):
    rel = path.relative_to(PACKAGE).with_suffix("").as_posix()
    broken = _violations(path, _part(path), rel)
    assert not broken, f"{rel}: " + "; ".join(broken)


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
def test_entry_points_stay_thin(name):
    path = ROOT / name
    parts = {p for n in _imports(path) if (p := _package_part(n)) is not None}
    assert parts <= ENTRY_POINTS[name], f"{name} imports {sorted(parts - ENTRY_POINTS[name])}"
    assert not {n.split(".")[0] for n in _imports(path)} & {"torch", "onnx"}


def test_the_rules_can_fail(tmp_path):
    """The checker flags torch outside train/, an upward import and ONNX in the tiler."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    import torch\n    from lightmycells.run import cli\n"
                   "import onnxruntime\n")
    broken = _violations(bad, "engine", "engine/tiling")
    assert len(broken) == 3, broken
    # train/ may import torch and ONNX Runtime, but not the run package
    assert [v.split()[0] for v in _violations(bad, "train", "train/loop")] == ["lightmycells.run"]


#: What the repository root holds (the Grand-Challenge template's files, the package's
#: metadata and requirements); anything else belongs in a folder. A tool run from the root
#: can leave files there (ONNX Runtime's quantiser left two, 2.2 MB, in one commit).
ROOT_FILES = {".dockerignore", ".gitignore", "Dockerfile", "README.md", "build.sh", "export.sh",
              "inference.py", "process.py", "pyproject.toml", "requirements-bench.txt",
              "requirements-dev.txt", "requirements.txt", "test.sh"}


def test_the_repository_root_holds_only_its_own_files():
    import shutil
    import subprocess
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    stray = {name for name in tracked if "/" not in name} - ROOT_FILES
    assert not stray, f"files at the repository root that belong elsewhere: {sorted(stray)}"
