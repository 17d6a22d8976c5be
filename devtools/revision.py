"""`make revision m="add orders"`: a new Alembic migration from what the models changed.

The database is `DATABASE_URL` with the `DB__SSL*` settings (as for `make migrate`) or, without
it, the project-local PostgreSQL that `make run` uses (devtools/localdb.py). It is brought to
the latest migration first, so the new one holds only the models' changes since; Alembic's
autogenerate compares the two. Review the file it writes before you commit it.
"""

from __future__ import annotations

import subprocess
import sys

from devtools.localdb import ROOT, database_env, teller

ALEMBIC = [sys.executable, "-m", "alembic"]


def main() -> int:
    say = teller("make revision")
    message = " ".join(sys.argv[1:]).strip()
    if not message:
        say('name the change: make revision m="add orders"')
        return 2
    with database_env(say) as env:
        for step in (["upgrade", "head"], ["revision", "--autogenerate", "-m", message]):
            done = subprocess.run([*ALEMBIC, *step], env=env, cwd=ROOT, check=False)
            if done.returncode != 0:
                return done.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
