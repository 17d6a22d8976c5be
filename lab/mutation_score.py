"""The mutation score of the last `mutmut run`, and a floor under it (`make mutation`).

Reads mutmut's own summary (`mutmut export-cicd-stats`). A mutant that no selected test reaches
counts as surviving: code nobody tests is not code the tests protect.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

STATS = Path("mutants/mutmut-cicd-stats.json")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--floor", type=float, required=True, help="least share killed, in %%")
    floor = parser.parse_args().floor
    stats = json.loads(STATS.read_text())
    caught = stats["killed"] + stats["timeout"]  # a mutant that hangs the tests is caught too
    score = 100 * caught / stats["total"]
    print(
        f"mutation score: {score:.1f} % ({caught} of {stats['total']} mutants caught; "
        f"{stats['survived']} survived, {stats['no_tests']} reached by no test)"
    )
    if score < floor:
        print(f"below the floor of {floor:g} %: `mutmut results` lists the survivors")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
