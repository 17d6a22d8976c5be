"""Which of the commands the README and docs show a test run actually ran.

`typed()` and `spawn()` (tests/docs.py) write each command they run here, as the document shows
it. `make test-all` empties the ledger before its tests and runs `python -m tests.ledger` after
them: every documented command must be in it, whatever the tests searched or skipped, except
those listed below with the reason. Under CI (`CI=true`) a missing one fails the run; on a
developer's machine, where skipped tests are expected, the report only lists them.
"""

from __future__ import annotations

import json
import os
import sys

from tests.docs import LEDGER, begins, every_command
from tests.support import ROOT

IN_CI = os.environ.get("CI") == "true"

# (document, how the command starts) -> why no test runs it here.
NOT_RUN_HERE = {
    ("README.md", "make test-all"): "the command that runs this check: it ends `make test-all`",
    ("README.md", "make audit"): "reads PyPI's vulnerability data, which only the internet "
    "serves (tests/supply_chain/test_dependencies.py runs it where that answers)",
    ("deploy/README.md", "kubectl "): "needs a Kubernetes cluster; the manifests are rendered "
    "by `kubectl kustomize` and validated against the API schemas (tests/deploy)",
    ("deploy/README.md", "useradd "): "changes the host's users: systemd install steps",
    ("deploy/README.md", "git clone "): "the systemd install steps, on a host of your own",
    ("deploy/README.md", "install -m 600"): "writes under /etc: systemd install steps",
    ("deploy/README.md", "cp deploy/systemd"): "writes under /etc: systemd install steps; the "
    "units are checked by `systemd-analyze verify` (tests/deploy/test_systemd.py)",
    ("deploy/README.md", "systemctl "): "needs systemd as PID 1 (not in containers or CI)",
}
# In a generated service: commands the template repository's suite ran in a service generated
# from it (tests/template/, which generated services do not carry).
RUN_BY_THE_TEMPLATE = {
    ("README.md", "make test"): "run in a generated service by the template's suite",
    ("README.md", "cruft "): "run in generated services by the template's suite",
    ("README.md", "git diff HEAD"): "the review step after `cruft update`, likewise",
}
IS_TEMPLATE = (ROOT / "tests" / "template").is_dir()


def ran() -> set[str]:
    if not LEDGER.exists():
        return set()
    return {json.loads(line) for line in LEDGER.read_text().splitlines() if line}


def exceptions() -> dict[tuple[str, str], str]:
    return NOT_RUN_HERE if IS_TEMPLATE else NOT_RUN_HERE | RUN_BY_THE_TEMPLATE


def excepted(document: str, command: str) -> str | None:
    """Why `command` of `document` need not run here, or None."""
    for (where, starts), why in exceptions().items():
        if where == document and begins(command, starts):
            return why
    return None


def not_run() -> list[tuple[str, str]]:
    done = ran()
    return [
        (document, command)
        for document, commands in every_command().items()
        for command in commands
        if command not in done and excepted(document, command) is None
    ]


def main() -> int:
    if sys.argv[1:] == ["reset"]:
        LEDGER.unlink(missing_ok=True)
        return 0
    missing = not_run()
    documented = [(d, c) for d, commands in every_command().items() for c in commands]
    done = ran()
    print(
        f"documented commands: {len(documented)}; run by a test in this run: "
        f"{sum(c in done for _, c in documented)}; not run, with a reason: "
        f"{sum(c not in done and excepted(d, c) is not None for d, c in documented)}"
    )
    for document, command in missing:
        print(f"  NOT RUN: {document}: {command}")
    if missing and IN_CI:
        print("CI=true: every documented command must run (tests/ledger.py lists the exceptions)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
