"""The lowest version of every dependency pyproject.toml declares, as pip pins.

``.ci/run`` installs the package with these pins (``pip install -c``) and runs
the version-matrix tests there, so the floors we declare are the floors we
test.  The pins are read from ``pyproject.toml`` each time: change a floor
there and CI tests the new one; nothing here can drift from it.

    python .ci/floors.py [EXTRA ...]          # pins for the dependencies + extras (default: test)
    python .ci/floors.py --check [EXTRA ...]  # exit 1 unless this interpreter has exactly those

Extras are followed through self-references (``gunicorn-otel[gevent,...]``).
A dependency declared without a lower bound (``>=``, ``==`` or ``~=``) anywhere
is an error: it has no floor to test.  Standard library only (``tomllib``, so
Python 3.11+ runs it; ``.ci/run`` uses the machine's ``python3``).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import pathlib
import re
import sys

import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?\s*([^;]*?)\s*(;.*)?$")
_LOWER = re.compile(r"^(>=|==|~=)\s*([0-9][A-Za-z0-9.+!-]*)$")


def canonical(name: str) -> str:
    """PEP 503 name: case and runs of ``-_.`` do not matter."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse(requirement: str) -> tuple[str, list[str], str | None]:
    """(canonical name, extras, lowest version or None) of one requirement string."""
    match = _REQUIREMENT.match(requirement)
    if match is None:
        raise SystemExit(f"floors: cannot read requirement {requirement!r}")
    name, extras, specifiers, marker = match.groups()
    if marker:
        raise SystemExit(f"floors: {requirement!r} has an environment marker; teach .ci/floors.py about it")
    lowest = None
    for specifier in filter(None, (s.strip() for s in specifiers.split(","))):
        bound = _LOWER.match(specifier)
        if bound:
            lowest = bound.group(2)
    return canonical(name), [e.strip() for e in (extras or "").split(",") if e.strip()], lowest


def floors(extras: list[str], pyproject: pathlib.Path = ROOT / "pyproject.toml") -> dict[str, str]:
    """Canonical name -> lowest declared version, for the dependencies and ``extras``."""
    project = tomllib.loads(pyproject.read_text())["project"]
    own = canonical(project["name"])
    optional = project.get("optional-dependencies", {})
    requirements = list(project.get("dependencies", []))
    pending, seen = list(extras), set()
    while pending:
        extra = pending.pop()
        if extra in seen:
            continue
        if extra not in optional:
            raise SystemExit(f"floors: pyproject.toml has no extra {extra!r}")
        seen.add(extra)
        for requirement in optional[extra]:
            name, inner, _ = parse(requirement)
            if name == own:
                pending += inner
            else:
                requirements.append(requirement)
    lowest: dict[str, str | None] = {}
    for requirement in requirements:
        name, _, version = parse(requirement)
        known = lowest.get(name)
        # Declared twice (a dependency and again in an extra): both bounds apply, the higher wins.
        if known is None or (version is not None and _release_key(version) > _release_key(known)):
            lowest[name] = version
    missing = sorted(name for name, version in lowest.items() if version is None)
    if missing:
        raise SystemExit(f"floors: no lower bound declared for {', '.join(missing)}")
    return {name: version for name, version in sorted(lowest.items()) if version is not None}


def _release_key(version: str) -> tuple:
    """``1.45`` and ``1.45.0`` are the same version (PEP 440 pads with zeros)."""
    match = re.match(r"^(\d+(?:\.\d+)*)(.*)$", version)
    if match is None:
        return (version,)
    release = [int(part) for part in match.group(1).split(".")]
    while len(release) > 1 and release[-1] == 0:
        release.pop()
    return (*release, match.group(2).lower())


def check(pins: dict[str, str]) -> list[str]:
    """Each pinned distribution not installed at exactly its floor, explained."""
    problems = []
    for name, version in pins.items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            problems.append(f"{name}: not installed (floor {version})")
            continue
        if _release_key(installed) != _release_key(version):
            problems.append(f"{name}: {installed} installed, floor is {version}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="verify this interpreter has exactly the floors")
    parser.add_argument("extras", nargs="*", default=["test"])
    ns = parser.parse_args(argv)
    pins = floors(ns.extras)
    if ns.check:
        problems = check(pins)
        for problem in problems:
            print(f"floors: {problem}", file=sys.stderr)
        if not problems:
            print(f"floors: all {len(pins)} declared dependencies are at their floor")
        return 1 if problems else 0
    for name, version in pins.items():
        print(f"{name}=={version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
