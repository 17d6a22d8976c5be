"""`python -m app.idempotency prune`: deletes the expired keys (IDEMPOTENCY__KEEP_HOURS).

The job worker does this hourly; a service without it runs this command from cron or a
Kubernetes CronJob. Settings are read and checked first: a bad one exits with status 2.
"""

from __future__ import annotations

import sys

from app.settings import settings_or_exit

if __name__ == "__main__":
    settings = settings_or_exit()
    from app.idempotency.cli import main  # after the check: see settings_or_exit

    sys.exit(main(sys.argv[1:], settings))
