"""The master-safe modules import nothing that must wait for the fork (or for gevent's patching).

Each module is imported alone in a fresh interpreter, as Gunicorn's master
would import it, and the test fails if any forbidden module ended up loaded:
the SDK builds objects inherited by every worker, and ``ssl``, ``urllib3``,
``requests``, ``grpc`` or gevent imported before ``monkey.patch_all()`` stay
unpatched in gevent workers.  ``http.client`` imports ``ssl`` at its top, so a
master-safe module keeps such imports inside functions.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

import gunicorn_otel

FORBIDDEN = ("opentelemetry.sdk", "ssl", "urllib3", "requests", "grpc", "gevent")
PACKAGE = pathlib.Path(gunicorn_otel.__file__).parent
MASTER_SAFE = sorted(
    [
        ".".join(("gunicorn_otel", *p.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
        for p in (PACKAGE / "_master").rglob("*.py")
        if p.parent != PACKAGE / "_master" or p.stem != "__init__"
    ]
    + [
        "gunicorn_otel",
        "gunicorn_otel._master",
        "gunicorn_otel.conf",
        "gunicorn_otel.settings",
        "gunicorn_otel.chain",
        "gunicorn_otel.__main__",
    ]
)

# Imported in a gevent worker's post_fork, before gevent patches: held to the same rule.
BEFORE_PATCH = ["gunicorn_otel._worker", "gunicorn_otel._worker.models", "gunicorn_otel._worker.models.gevent"]

_PROBE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
forbidden = tuple(sys.argv[2:])
print(json.dumps(sorted(m for m in sys.modules if m in forbidden or m.startswith(tuple(f + "." for f in forbidden)))))
"""


def test_the_master_safe_list_covers_the_master_package():
    assert "gunicorn_otel._master.hooks" in MASTER_SAFE
    assert "gunicorn_otel._master.master_telemetry" in MASTER_SAFE
    assert "gunicorn_otel._master.master_telemetry.sender" in MASTER_SAFE
    assert len([m for m in MASTER_SAFE if m.startswith("gunicorn_otel._master.")]) >= 8


@pytest.mark.parametrize("module", MASTER_SAFE + BEFORE_PATCH)
def test_master_safe_module_imports_nothing_heavy(module):
    env = {"PATH": "/usr/bin:/bin", "OTEL_SDK_DISABLED": "false"}
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, module, *FORBIDDEN],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=PACKAGE.parent,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [], f"{module} imported {done.stdout.strip()} at import time"


def test_the_probe_sees_a_forbidden_import():
    """The check itself can fail: a worker-only module is caught importing the SDK."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, "gunicorn_otel._worker.models.threads", *FORBIDDEN],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=PACKAGE.parent,
    )
    assert done.returncode == 0, done.stderr
    assert "opentelemetry.sdk" in json.loads(done.stdout)
