"""`python -m app.jobs`: the worker (Procfile `worker:`). Also, for people on call:

    python -m app.jobs failed           list the jobs held as failed (newest first)
    python -m app.jobs retry ID [ID...] queue failed jobs again, with their attempts reset

Settings are read and checked first: a bad one exits with status 2, naming every bad variable,
before any port is bound.
"""

from __future__ import annotations

import sys

from app.settings import settings_or_exit

if __name__ == "__main__":
    settings = settings_or_exit()
    from app.jobs.cli import main  # after the check: see settings_or_exit

    sys.exit(main(sys.argv[1:], settings))
