"""The container without a Docker engine: lint the Dockerfile and scripts, check what the image
would contain, and run the entry point from exactly those files."""

import fnmatch
import importlib.metadata as metadata
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from packaging.requirements import Requirement

from lightmycells.io import ome

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
SCRIPTS = ("build.sh", "export.sh", "test.sh")


def instructions():
    """(instruction, arguments) pairs of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            rows.append((word.upper(), rest.strip()))
    return rows


def copies():
    """(sources, destination) of every COPY, without --flags."""
    out = []
    for word, rest in instructions():
        if word == "COPY":
            parts = [p for p in rest.split() if not p.startswith("--")]
            out.append((parts[:-1], parts[-1]))
    return out


def ignore_patterns():
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [p.strip().rstrip("/") for p in lines if p.strip() and not p.startswith("#")]


def ignored(relative: Path) -> bool:
    """Docker's .dockerignore semantics, enough for the patterns this repository uses."""
    parts = relative.parts
    for pattern in ignore_patterns():
        if pattern.startswith("**/"):
            if any(fnmatch.fnmatch(part, pattern[3:]) for part in parts):
                return True
        elif any(fnmatch.fnmatch("/".join(parts[:i]), pattern) for i in range(1, len(parts) + 1)):
            return True
    return False


def image_tree(target: Path) -> Path:
    """Lay out the files the Dockerfile's COPY lines put into /opt/app."""
    for sources, destination in copies():
        for source in sources:
            path = REPO / source
            files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
            for file in files:
                relative = file.relative_to(REPO)
                if ignored(relative):
                    continue
                dest = target / destination.strip("./") / relative.relative_to(source.rstrip("/")) \
                    if path.is_dir() else target / destination.strip("./") / file.name
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, dest)
    return target


def test_dockerfile_passes_hadolint():
    result = subprocess.run(["hadolint", "--no-color", str(DOCKERFILE)], capture_output=True,
                            text=True)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_pass_shellcheck_and_are_executable(script):
    path = REPO / script
    result = subprocess.run(["shellcheck", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert path.stat().st_mode & 0o111, f"{script} is not executable"
    assert "set -euo pipefail" in path.read_text()


def test_dockerfile_contract():
    rows = instructions()
    words = [w for w, _ in rows]
    base = dict(rows)["FROM"]
    assert re.fullmatch(r"nvidia/cuda:13\.\d+\.\d+-cudnn-runtime-ubuntu\d+\.\d+", base), base
    # under an init process, so that docker stop's SIGTERM reaches python (exit 143)
    assert rows[-1] == ("ENTRYPOINT", '["/usr/bin/tini", "--", "python", "inference.py"]')
    assert any(word == "RUN" and re.search(r"apt-get install [^&]*\btini\b", rest)
               for word, rest in rows)
    user = [rest for word, rest in rows if word == "USER"]
    assert user and user[-1].split(":")[0] not in ("root", "0")
    assert words.index("USER") > max(i for i, w in enumerate(words) if w == "RUN")
    env = " ".join(rest for word, rest in rows if word == "ENV")
    assert "PYTHONUNBUFFERED=1" in env
    assert any("pip install" in rest and "-r requirements.txt" in rest
               for word, rest in rows if word == "RUN")
    assert any("weights/" in sources for sources, _ in copies())


def test_every_copied_path_exists_and_is_in_the_build_context():
    for sources, _ in copies():
        for source in sources:
            assert (REPO / source).exists(), f"Dockerfile copies {source}, which does not exist"
            assert not ignored(Path(source.rstrip("/"))), f".dockerignore excludes {source}"


def test_container_requirements_have_no_torch_and_no_cpu_onnxruntime():
    names = {Requirement(line).name.lower() for line in _requirement_lines()}
    assert "onnxruntime-gpu" in names
    assert not names & {"torch", "onnxruntime", "onnx"}


def _requirement_lines():
    lines = (REPO / "requirements.txt").read_text().splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


def _installable(names):
    """Distributions pip installs for ``names``: the names and their dependencies."""
    seen, todo = set(), [n.lower() for n in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for spec in metadata.requires(name) or []:
            requirement = Requirement(spec)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name.lower())
    return {n.replace("_", "-") for n in seen}


def test_entry_point_runs_from_the_image_files_with_container_requirements_only(
        tmp_path, identity_weights):
    app = image_tree(tmp_path / "app")
    assert (app / "inference.py").is_file() and (app / "lightmycells" / "io" / "ome.py").is_file()
    assert not (app / "lightmycells" / "train").exists()  # torch code stays out of the image
    image = (np.random.default_rng(0).random((20, 30)) * 500).astype(np.uint16)
    (tmp_path / "in").mkdir()
    ome.write(tmp_path / "in" / "a.tiff", image, channel="PC", pixel_size_um=(0.1, 0.1))
    probe = (
        "import json, runpy, sys\n"
        "startup = set(sys.modules)  # site hooks (e.g. setuptools' .pth) are not the app's\n"
        "sys.argv = ['inference.py', *sys.argv[1:]]\n"
        "try:\n    runpy.run_path('inference.py', run_name='__main__')\n"
        "except SystemExit as stop:\n    code = stop.code\n"
        "top = sorted({m.split('.')[0] for m in set(sys.modules) - startup})\n"
        "print(json.dumps({'code': code, 'modules': top}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, "--input", str(tmp_path / "in"), "--output",
         str(tmp_path / "out"), "--weights", str(identity_weights), "--device", "cpu"],
        cwd=app, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"},
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["code"] == 0, result.stderr
    assert len(list((tmp_path / "out" / "images").rglob("a.tiff"))) == 4
    allowed = _installable(Requirement(line).name for line in _requirement_lines())
    distributions = metadata.packages_distributions()
    own = {p.stem for p in app.iterdir()}  # the app's own modules (even if pip-installed)
    used = {d.lower().replace("_", "-") for m in report["modules"] if m not in own
            for d in distributions.get(m, [])}
    assert used, "no third-party module seen; the probe is broken"
    assert used <= allowed, f"imported but not in requirements.txt: {sorted(used - allowed)}"
    assert "torch" not in report["modules"]
