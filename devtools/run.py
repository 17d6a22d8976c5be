"""`make run` and `make worker`: the production commands, plus a project-local PostgreSQL when
none is given.

With `DATABASE_URL` set: migrate it, then run the process exactly as production does. Without
it: create (once) or start the cluster in `.local/postgres` (devtools/localdb.py), point the
process at it with `verify-full` TLS, migrate, run it, and stop the cluster again when it exits
(Ctrl-C), unless the other command started it and still uses it.
"""

from __future__ import annotations

import signal
import subprocess
import sys

from devtools.localdb import ROOT, database_env, teller

PROCESSES = {
    "web": [sys.executable, "-m", "gunicorn", "-c", "gunicorn_conf.py", "app.main:app"],
    "worker": [sys.executable, "-m", "app.jobs"],  # jobs-only
}
MIGRATE = [sys.executable, "-m", "alembic", "upgrade", "head"]


def main(process: str) -> int:
    say = teller("make run" if process == "web" else f"make {process}")
    with database_env(say) as env:
        migrate = subprocess.run(MIGRATE, env=env, cwd=ROOT, check=False)
        if migrate.returncode != 0:
            say("migrations failed; not starting")
            return migrate.returncode
        if process == "web":
            host = env.get("HOST", "0.0.0.0")  # noqa: S104 - same default as the settings
            shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104 - compared, not bound
            say(f"open http://{shown}:{env.get('PORT', '8000')}/docs  (Ctrl-C stops)")
        server = subprocess.Popen(PROCESSES[process], env=env, cwd=ROOT)
        # Ctrl-C reaches the server directly (same process group); this process only waits for
        # it. SIGTERM (e.g. from a supervisor) is passed on.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, lambda *_: server.send_signal(signal.SIGTERM))
        return server.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "web"))
