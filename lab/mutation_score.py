"""The mutation score of the last `mutmut run`, by part, and a floor under each (`make mutation`).

Reads mutmut's record of every mutant (`mutants/**/*.meta`: the tests' exit code per mutant).
Authentication (`app/auth/` and the provider-URL rules in `app/settings.py`) is reported apart
from the rest. A mutant that no selected test reaches counts as surviving: code nobody tests is
not code the tests protect. Timeouts count as caught: a mutant that hangs the tests is noticed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

MUTANTS = Path("mutants")
CAUGHT = {1, 3, 36, 24, -24, 152, 255, 37}  # killed, pytest error, timeouts, type check
# The settings' functions that decide which provider URLs are acceptable.
AUTH_SETTINGS = ("AuthSettings", "_https_or_loopback", "_http_url")


def part_of(source: str, mutant: str) -> str:
    if source.startswith("app/auth/") or (
        source == "app/settings.py" and any(name in mutant for name in AUTH_SETTINGS)
    ):
        return "authentication"
    return "the rest"


def outcomes() -> dict[str, Counter[str]]:
    found: dict[str, Counter[str]] = {}
    for meta in sorted(MUTANTS.rglob("*.py.meta")):
        source = meta.relative_to(MUTANTS).as_posix().removesuffix(".meta")
        for mutant, exit_code in json.loads(meta.read_text())["exit_code_by_key"].items():
            part = found.setdefault(part_of(source, mutant), Counter())
            part["caught" if exit_code in CAUGHT else "survived"] += 1
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--floor", type=float, required=True, help="least share caught, in %%")
    floor = parser.parse_args().floor
    failed = False
    for part, counted in sorted(outcomes().items()):
        total = counted["caught"] + counted["survived"]
        score = 100 * counted["caught"] / total
        print(
            f"{part}: {score:.1f} % ({counted['caught']} of {total} mutants caught, "
            f"{counted['survived']} survived)"
        )
        failed |= score < floor
    if failed:
        print(f"below the floor of {floor:g} %: `mutmut results` lists the survivors")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
