"""Build the Lambda deployment zip: the handler's code and only the packages it imports.

    .venv/bin/python scripts/build_lambda_zip.py [--out dist/sluice-lambda.zip]
        [--platform manylinux2014_aarch64 --python-version 3.12]

What goes in: ``sluice`` without the CLI, the tools, the planner and the local emulator
helpers (the handler imports none of them), and the distributions the core requires, found
by walking their metadata from ``sluice``'s own requirements minus the CLI's (click, rich):
aiobotocore, botocore (service models trimmed to the services Sluice calls), aiohttp and its
helpers, psycopg with psycopg-binary, structlog, orjson, prometheus-client. Never an extra
(DuckDB, Arrow, Matplotlib) or a test dependency.

Platform: by default the files are copied from this virtualenv, so the zip runs on the
platform and Python version the virtualenv runs on (the build says which): build on Linux
x86_64 with the Python of the Lambda runtime you choose (python3.11 here) for an x86_64
function. With ``--platform``, the same locked versions are installed from PyPI for another
platform instead (``manylinux2014_aarch64`` for an arm64 function; needs PyPI). psycopg-binary,
orjson and aiohttp's helpers are native wheels: a zip built for one platform does not run on
the other.
"""

from __future__ import annotations

import argparse
import importlib.util
import py_compile
import re
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from importlib.metadata import Distribution, PackageNotFoundError, distribution
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "src" / "sluice"
LOCK = REPO / "requirements.lock"
# The CLI's own packages: the handler never imports them (tests/integration/test_lambda_zip.py
# runs the handler from the unpacked zip, with nothing else on sys.path).
NOT_FOR_LAMBDA = {"click", "rich"}
# Parts of sluice the handler does not import: the CLI, the tools, the planner, the local
# emulator helpers, the DuckDB sink (an extra) and the module entry point.
SLUICE_LEFT_OUT = ("cli", "tools", "plan", "local", "sinks/duckdb.py", "__main__.py")
# botocore's service models kept: what Sluice calls (SQS, the Redshift Data API,
# GetClusterCredentials, S3 staging) and what the credential chain may call (STS, SSO).
BOTOCORE_SERVICES = {"sqs", "redshift-data", "redshift", "s3", "sts", "sso", "sso-oidc"}
FIXED_TIME = (2020, 1, 1, 0, 0, 0)  # every entry's timestamp: the same files, the same zip


def closure(roots: Iterable[str]) -> dict[str, Distribution]:
    """The installed distributions ``roots`` need, transitively, extras excluded."""
    found: dict[str, Distribution] = {}
    pending = [Requirement(text) for text in roots]
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        if name in found or name in NOT_FOR_LAMBDA:
            continue
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            sys.exit(f"{name} is not installed here: run `make setup` first")
        found[name] = dist
        pending.extend(Requirement(text) for text in dist.requires or ())
        for extra in requirement.extras:  # psycopg[binary]
            for text in dist.requires or ():
                extra_requirement = Requirement(text)
                marker = extra_requirement.marker
                if marker is not None and marker.evaluate({"extra": extra}):
                    extra_requirement.marker = None
                    pending.append(extra_requirement)
    return found


def sluice_roots() -> list[str]:
    return [text for text in distribution("sluice").requires or () if "extra ==" not in text]


def _kept(relative: str) -> bool:
    parts = relative.split("/")
    if "__pycache__" in parts or relative.endswith(".pyc"):
        return False  # the installed bytecode is checked by time: made afresh (compiled)
    if parts[0] == "botocore" and len(parts) > 3 and parts[1] == "data":
        return parts[2] in BOTOCORE_SERVICES
    return not (parts[0].endswith(".dist-info") and parts[-1] in {"RECORD", "INSTALLER"})


def installed_files(dist: Distribution) -> Iterator[tuple[Path, str]]:
    """(file on disk, name in the zip) for what the distribution installed in site-packages."""
    base = Path(str(dist.locate_file("")))
    for entry in dist.files or ():
        relative = entry.as_posix()
        if relative.startswith("..") or not _kept(relative):
            continue
        path = base / relative
        if path.is_file():
            yield path, relative


def sluice_files() -> Iterator[tuple[Path, str]]:
    for path in sorted(SOURCE.rglob("*")):
        relative = path.relative_to(SOURCE).as_posix()
        if not path.is_file() or not _kept(relative):
            continue
        if any(relative == left or relative.startswith(left + "/") for left in SLUICE_LEFT_OUT):
            continue
        yield path, f"sluice/{relative}"


def locked_versions(names: Iterable[str]) -> list[str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", line.strip())
        if match:
            pins[canonicalize_name(match.group(1))] = line.strip()
    return [pins[name] for name in sorted(names) if name in pins]


def files_for_platform(
    names: Iterable[str], platform: str, python_version: str, into: Path
) -> Iterator[tuple[Path, str]]:
    """The locked versions installed from PyPI for another platform (wheels only)."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "--platform",
            platform,
            "--python-version",
            python_version,
            "--implementation",
            "cp",
            "--target",
            str(into),
            *locked_versions(names),
        ],
        check=True,
    )
    for path in sorted(into.rglob("*")):
        relative = path.relative_to(into).as_posix()
        if path.is_file() and _kept(relative) and not relative.startswith("bin/"):
            yield path, relative


def compiled(files: Iterable[tuple[Path, str]], into: Path) -> Iterator[tuple[Path, str]]:
    """Bytecode for every module, beside its source as the import system looks for it.

    /var/task is read-only, so without it Lambda compiles every module at every cold start.
    Unchecked-hash pycs (PEP 552) are used whatever the files' times once unpacked; they are
    only valid for this interpreter's version, which is why --platform builds skip them.
    """
    for path, name in files:
        if not name.endswith(".py"):
            continue
        cached = Path(importlib.util.cache_from_source(name))
        target = into / cached
        try:
            py_compile.compile(
                str(path),
                cfile=str(target),
                dfile=name,
                doraise=True,
                invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
            )
        except py_compile.PyCompileError:
            continue  # a file that is not Python 3 source (some packages ship templates)
        yield target, cached.as_posix()


def write_zip(out: Path, files: Iterable[tuple[Path, str]]) -> int:
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(".partial")
    count = 0
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for path, name in sorted(files, key=lambda item: item[1]):
            info = zipfile.ZipInfo(name, FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16  # Lambda runs as another user: world-readable
            archive.writestr(info, path.read_bytes(), compresslevel=9)
            count += 1
    partial.replace(out)
    return count


def unpacked_size(out: Path) -> int:
    with zipfile.ZipFile(out) as archive:
        return sum(info.file_size for info in archive.infolist())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "dist" / "sluice-lambda.zip")
    parser.add_argument("--platform", help="e.g. manylinux2014_aarch64 (installs from PyPI)")
    parser.add_argument("--python-version", default=sysconfig.get_python_version())
    parser.add_argument(
        "--no-compile", action="store_true", help="leave out the bytecode (a smaller zip)"
    )
    args = parser.parse_args()
    deps = closure(sluice_roots())
    with tempfile.TemporaryDirectory() as scratch:
        if args.platform:
            dep_files = list(
                files_for_platform(deps, args.platform, args.python_version, Path(scratch))
            )
            target = f"{args.platform}, CPython {args.python_version}"
        else:
            dep_files = [item for dist in deps.values() for item in installed_files(dist)]
            target = f"{sysconfig.get_platform()}, CPython {sysconfig.get_python_version()}"
        files = [*sluice_files(), *dep_files]
        if not (args.platform or args.no_compile):
            files.extend(compiled(list(files), Path(scratch) / "pyc"))
        count = write_zip(args.out, files)
    size = args.out.stat().st_size
    print(
        f"{args.out}: {size / 1e6:.1f} MB zipped, {unpacked_size(args.out) / 1e6:.1f} MB "
        f"unpacked, {count} files; for {target}; packages: {', '.join(sorted(deps))}"
    )


if __name__ == "__main__":
    main()
