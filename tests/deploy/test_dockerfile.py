"""deploy/Dockerfile: hadolint at its strictest threshold, and the shape the platforms rely on."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

from tests.deploy.pack import DOCKERFILE, REPO, assert_ok, run, tool


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    pairs = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        pairs.append((keyword.upper(), rest.strip()))
    return pairs


def stages(path: Path) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for keyword, rest in instructions(path):
        if keyword == "FROM":
            result.append([])
        if result:
            result[-1].append((keyword, rest))
    return result


def build_args() -> dict[str, str]:
    return dict(
        rest.split("=", 1)
        for keyword, rest in instructions(DOCKERFILE)
        if keyword == "ARG" and "=" in rest
    )


def test_hadolint_passes_at_style_threshold() -> None:
    assert_ok(
        run([tool("hadolint"), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)])
    )


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:3.11\nRUN pip install sluice\nUSER root\n")
    result = run([tool("hadolint"), "--no-color", "--failure-threshold", "style", str(bad)])
    assert result.returncode != 0
    assert "DL3013" in result.stdout  # unpinned pip install
    assert "DL3002" in result.stdout  # last USER root


def test_multi_stage_build_runs_as_numeric_non_root_user() -> None:
    builder, runtime = stages(DOCKERFILE)
    assert builder[0][1] == "${PYTHON_IMAGE} AS builder"
    assert runtime[0][1] == "${PYTHON_IMAGE} AS runtime"
    args = build_args()
    assert args["PYTHON_VERSION"] == "3.11"
    # the upstream image unless a build names another (a mirror, or a stand-in for tests)
    assert args["PYTHON_IMAGE"] == "python:${PYTHON_VERSION}-slim-bookworm"
    runtime_keywords = dict(runtime)
    assert runtime_keywords["USER"] == "10001:10001"
    assert runtime_keywords["EXPOSE"] == "3000"
    assert json.loads(runtime_keywords["ENTRYPOINT"]) == ["sluice"]
    assert json.loads(runtime_keywords["CMD"]) == ["run"]
    assert "COPY --from=builder /opt/venv /opt/venv" in {
        f"COPY {r}" for k, r in runtime if k == "COPY"
    }
    # the runtime stage installs nothing: no compilers, no package manager runs
    assert not any(k == "RUN" and ("pip" in r or "apt-get" in r) for k, r in runtime)


def test_builder_installs_the_locked_runtime_deps_and_a_wheel_not_editable() -> None:
    builder = stages(DOCKERFILE)[0]
    runs = " ".join(r for k, r in builder if k == "RUN")
    assert "--constraint requirements.lock" in runs
    assert "-e " not in runs and "--editable" not in runs
    words = shlex.split(runs.replace("&&", " "))
    assert "--no-deps" in words and "." in words


def test_uv_version_matches_the_lock() -> None:
    lock = (REPO / "requirements.lock").read_text()
    locked = re.search(r"^uv==(\S+)$", lock, re.MULTILINE)
    assert locked, "requirements.lock pins uv"
    arg = re.search(r"^ARG UV_VERSION=(\S+)$", DOCKERFILE.read_text(), re.MULTILINE)
    assert arg, "deploy/Dockerfile has ARG UV_VERSION"
    assert arg.group(1) == locked.group(1)


def test_dockerignore_sends_only_what_the_build_copies() -> None:
    lines = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "an allow-list: everything excluded first"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = set()
    for keyword, rest in instructions(DOCKERFILE):
        if keyword == "COPY" and not rest.startswith("--from"):
            copied.update(p.rstrip("/") for p in rest.split()[:-1])
    assert copied <= allowed, f"COPY sources missing from .dockerignore: {copied - allowed}"
    for path in allowed:
        assert (REPO / path).exists(), path


def _install_with_extras(tmp_path: Path, extras: str) -> list[list[str]]:
    """Run the builder's dependency RUN with SLUICE_EXTRAS set and a stand-in `uv` that
    records its arguments: what the image would compile and install."""
    (run_line,) = [r for k, r in stages(DOCKERFILE)[0] if k == "RUN" and "SLUICE_EXTRAS" in r]
    record = tmp_path / "uv-calls"
    fake = tmp_path / "bin" / "uv"
    fake.parent.mkdir(parents=True)
    fake.write_text(f'#!/bin/sh\necho "$*" >> {record}\n')
    fake.chmod(0o755)
    env = {
        "PATH": f"{fake.parent}:/usr/bin:/bin",
        "SLUICE_EXTRAS": extras,
        "PYTHON_VERSION": "3.11",
    }
    done = subprocess.run(
        ["sh", "-c", run_line], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    return [line.split() for line in record.read_text().splitlines()]


def test_image_installs_only_the_base_unless_extras_are_asked_for(tmp_path: Path) -> None:
    assert build_args()["SLUICE_EXTRAS"] == '""'
    compile_lean, install = _install_with_extras(tmp_path / "lean", "")
    assert compile_lean[:3] == ["pip", "compile", "pyproject.toml"]
    assert "--extra" not in compile_lean and "--all-extras" not in compile_lean
    assert install[:2] == ["pip", "install"]
    compile_full, _ = _install_with_extras(tmp_path / "full", "duckdb,charts")
    extras = [compile_full[i + 1] for i, word in enumerate(compile_full) if word == "--extra"]
    assert extras == ["duckdb", "charts"]
