"""Refuse bad answers before cookiecutter writes anything (it removes the folder on failure)."""

from __future__ import annotations

import json
import re
import sys

ANSWERS = json.loads(r"""{{ cookiecutter | jsonify }}""")

RULES = {
    "project_slug": (
        r"[a-z][a-z0-9]*(-[a-z0-9]+)*",
        "lowercase letters, digits and single hyphens, starting with a letter, at most 40 "
        "characters (it names the image, the Kubernetes objects and the Compose project)",
        40,
    ),
    "database_name": (
        r"[a-z_][a-z0-9_]*",
        "lowercase letters, digits and underscores, not starting with a digit, at most 63 "
        "characters (a PostgreSQL identifier that needs no quoting)",
        63,
    ),
    "python_version": (r"3\.(1[1-9]|[2-9][0-9])", "3.11 or later, as MAJOR.MINOR", 5),
    "port": (r"[1-9][0-9]{0,4}", "a number from 1024 to 65535", 5),
}


# Free text, copied verbatim into string literals of several languages.
TEXTS = {"project_name": 60, "description": 200, "author": 60}
UNSAFE = re.compile(r'["\\`$%{}\x00-\x1f\x7f]')


def problems(answers: dict[str, str]) -> list[str]:
    found = []
    for key, (pattern, allowed, longest) in RULES.items():
        value = str(answers[key])
        valid = len(value) <= longest and re.fullmatch(pattern, value) is not None
        if valid and key == "port":
            valid = 1024 <= int(value) <= 65535
        if not valid:
            found.append(f"{key}={value!r} is not valid: use {allowed}.")
    for key, longest in TEXTS.items():
        value = str(answers[key])
        if not value.strip() or len(value) > longest or UNSAFE.search(value):
            found.append(
                f"{key}={value!r} is not valid: use 1 to {longest} characters, none of "
                '" \\ ` $ % { } or control characters (the text is written into Python, '
                "TOML, YAML and systemd files as it is)."
            )
    return found


if __name__ == "__main__":
    if found := problems(ANSWERS):
        print("\n".join(["Cannot generate the service:", *found]), file=sys.stderr)
        sys.exit(1)
