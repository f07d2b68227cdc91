"""Run by a fresh venv's own Python: import every runtime dependency that requirements.lock
installs on this interpreter (its markers evaluated here), module by module, and the service.

Prints one line per failure and exits 1 if there is any. Uses pip's own vendored
`packaging`, since a fresh runtime install need not have `packaging` of its own.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import re
import sys
import warnings
from pathlib import Path

from pip._vendor.packaging.requirements import Requirement
from pip._vendor.packaging.utils import canonicalize_name

LOCKED = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.-]*==[^ \\]+)( ;[^\\]*)?")


def locked_for_this_python(lock: Path) -> set[str]:
    names = set()
    for line in lock.read_text().splitlines():
        match = LOCKED.match(line)
        if match:
            requirement = Requirement(match.group(1) + (match.group(2) or ""))
            if requirement.marker is None or requirement.marker.evaluate():
                names.add(canonicalize_name(requirement.name))
    return names


def main() -> int:
    lock = Path(sys.argv[1])
    modules_of: dict[str, set[str]] = {}
    for module, distributions in importlib.metadata.packages_distributions().items():
        for distribution in distributions:
            modules_of.setdefault(canonicalize_name(distribution), set()).add(module)
    failures = []
    wanted = locked_for_this_python(lock)
    for distribution in sorted(wanted):
        modules = sorted(m for m in modules_of.get(distribution, ()) if m.isidentifier())
        if not modules:
            failures.append(f"{distribution}: locked but not installed (or no module)")
        for module in modules:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    importlib.import_module(module)
            except Exception as error:  # every failure is reported, not raised
                failures.append(f"{distribution}: import {module}: {error!r}")
    for module in ("rpm.app", "rpm.cli", "simulators.cli"):
        try:
            importlib.import_module(module)
        except Exception as error:
            failures.append(f"rpm: import {module}: {error!r}")
    for failure in failures:
        print(failure)
    print(f"{len(wanted)} locked distributions, {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
