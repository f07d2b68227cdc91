"""The README's install on a fresh clone, as a newcomer makes it: a new venv made by each
supported Python's own `venv` module, with the pip that venv brings (never upgraded), then
`make install`, then an import of every runtime dependency.

This is the check that nothing published upstream after the lock was made can break a
fresh install (the install resolves nothing; see the Makefile). It runs `python3` from
PATH, the interpreter the README's commands use, and every interpreter named in
`RPM_TEST_INSTALL_PYTHONS` (space-separated; .ci/run names the other supported versions
the machine has). Each install takes about a minute (pip's cache warm).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.install]

ROOT = Path(__file__).resolve().parents[2]
SUPPORTED = ((3, 11), (3, 12), (3, 13))


def _version(python: str) -> tuple[int, int] | None:
    try:
        answer = subprocess.run(
            [python, "-c", "import sys; print(*sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    major, minor = answer.stdout.split()
    return int(major), int(minor)


def _interpreters() -> dict[str, str]:
    """Supported interpreters to try, by version, the first named of each version."""
    found: dict[str, str] = {}
    for name in ["python3", *os.environ.get("RPM_TEST_INSTALL_PYTHONS", "").split()]:
        path = shutil.which(name)
        version = _version(path) if path else None
        if path and version in SUPPORTED:
            found.setdefault(".".join(map(str, version)), path)
    return found


def _fresh_clone(destination: Path) -> None:
    """The working tree's files that a clone would hold (tracked and new, not ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (entry.decode() for entry in listed)):
        source = ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def _newcomer_environment() -> dict[str, str]:
    # Not this test run's venv, nor its settings: a shell as a newcomer opens it.
    bin_dir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RPM_", "VIRTUAL_ENV"))}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != bin_dir)
    return env


INTERPRETERS = _interpreters()


def test_the_readme_commands_use_a_supported_python() -> None:
    assert INTERPRETERS, f"no python3 of {SUPPORTED} on PATH"


@pytest.mark.parametrize("version", sorted(INTERPRETERS))
def test_a_fresh_clone_installs_with_the_venv_own_pip(version: str, tmp_path: Path) -> None:
    python = INTERPRETERS[version]
    clone = tmp_path / "rpm"
    _fresh_clone(clone)
    env = _newcomer_environment()

    install = subprocess.run(
        ["make", "install", f"PYTHON={python}"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    errors = [line for line in install.stderr.splitlines() if not line.startswith("WARNING:")]
    assert install.returncode == 0, "\n".join([*errors[-30:], install.stdout[-2000:]])

    venv_python = str(clone / ".venv" / "bin" / "python")
    # The pip in the venv is the one that interpreter's venv brought: nobody upgraded it.
    bundled = subprocess.run(
        [python, "-c", "import ensurepip; print(ensurepip.version())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    pip = subprocess.run(
        [venv_python, "-m", "pip", "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert pip.startswith(f"pip {bundled} "), pip

    imports = subprocess.run(
        [venv_python, str(ROOT / "tests" / "e2e" / "runtime_imports.py"), "requirements.lock"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert imports.returncode == 0, imports.stdout + imports.stderr
    rpm_help = subprocess.run(
        [str(clone / ".venv" / "bin" / "rpm"), "--help"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert rpm_help.returncode == 0, rpm_help.stderr
