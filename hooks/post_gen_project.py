"""Turn the copied reference service into the new one.

The template directory holds symlinks to the repository root's files, copied verbatim
(`_copy_without_render`), so the root stays the one, runnable source of truth. Here, in the
generated folder: drop what only the template needs, then replace the reference identity
(pyproject.toml `[tool.service]`) with the answers, wherever it appears.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

ANSWERS = json.loads(r"""{{ cookiecutter | jsonify }}""")

# The template's machinery and laboratory (README: What a generated service carries), and local
# state that a copy from a working checkout may bring along.
REMOVE = ("tests/template", "lab", ".venv", ".tools", ".local")
CACHES = ("__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis", "mutants")
# Measured records of the reference service: they say what ran, and stay as they are.
KEEP_AS_IS = ("docs/benchmarks.md",)


def clean(project: Path) -> None:
    # Git refuses to read a .gitignore that is a symlink, so the template links it by this name.
    (project / "gitignore").rename(project / ".gitignore")
    for relative in REMOVE:
        path = project / relative
        if path.is_dir():
            shutil.rmtree(path)
    for name in CACHES:
        for path in list(project.rglob(name)):
            shutil.rmtree(path, ignore_errors=True)


# The example domain: its package, migration and tests. `app/domains.py` is the one other
# file that names it.
EXAMPLE = (
    "app/items",
    "migrations/versions/20261122_0001_create_items.py",
    "migrations/versions/20261205_0003_publish_items.py",  # uses the job queue too
    "tests/integration/test_items.py",
)
JOB_QUEUE_MIGRATION = "migrations/versions/20261205_0002_job_queue.py"
MIGRATIONS = "migrations/versions"
DOWN_REVISION = re.compile(r"^down_revision: str \| None = .*$", re.MULTILINE)
REVISES = re.compile(r"^Revises:.*$", re.MULTILINE)


def remove_paths(project: Path, paths: tuple[str, ...]) -> None:
    for relative in paths:
        path = project / relative
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def remove_example(project: Path) -> None:
    remove_paths(project, EXAMPLE)
    # Git keeps no empty folder, and Alembic needs this one.
    (project / MIGRATIONS / ".gitkeep").touch()
    registry = project / "app" / "domains.py"
    text = re.sub(r"(from app\.items import .*\n)+", "", registry.read_text())
    text = one_blank_after_imports(text)
    text = re.sub(r"\[\n\s+\*?items_\w+(\.router|\.JOBS)?,\n\]", "[]", text)
    registry.write_text(text)
    for document in (project / "README.md", project / "docs" / "tracing.md"):
        document.write_text(EXAMPLE_ONLY.sub("", document.read_text()))
    for bench in sorted((project / "bench").glob("*.py")):
        text = EXAMPLE_ONLY_LINES.sub("", bench.read_text())
        bench.write_text(tidy_python(EMPTY_LIST.sub("[]", text)))


# Background jobs: the worker package, its migrations, deployment files, tests and docs. Every
# other file marks its job lines (`# jobs-only` at a line's end, or a block between `# jobs-only`
# and `# /jobs-only` lines, `<!-- jobs-only -->` in Markdown).
JOBS = (
    "app/jobs",
    "app/items/jobs.py",
    JOB_QUEUE_MIGRATION,
    "migrations/versions/20261205_0003_publish_items.py",
    "tests/jobs.py",
    "tests/jobs_worker.py",
    "tests/integration/test_jobs_enqueue.py",
    "tests/server/test_jobs_worker.py",
    "tests/server/test_jobs_faults.py",
    "tests/integration/test_jobs_maintenance.py",
    "deploy/k8s/base/worker-deployment.yaml",
    "deploy/k8s/components/monitoring/worker-podmonitor.yaml",
    "deploy/k8s/base/worker-pdb.yaml",
    "deploy/systemd/fastapi-service-worker.service",
    "docs/jobs.md",
    "docs/adr/0011-background-jobs.md",
    "bench/jobs.py",
    "bench/jobs_app.py",
    "bench/worker.py",
    "bench/post.lua",
)
JOBS_ONLY = re.compile(
    r"<!-- jobs-only[^>]*-->.*?<!-- /jobs-only -->\n*"
    r"|^ *# jobs-only\n.*?^ *# /jobs-only\n"
    r"|^[^\n]*# jobs-only\n",
    re.DOTALL | re.M,
)
JOB_PACKAGES = ("pgqueuer",)


# The dashboard's jobs row comes last (devtools/dashboard.py), with the worker's variable.
DASHBOARD = "deploy/grafana/dashboard.json"
DASHBOARD_JOBS_ROW = "Background jobs"


def remove_jobs(project: Path) -> None:
    remove_paths(project, JOBS)
    drop_dashboard_jobs(project / DASHBOARD)
    for path in sorted(project.rglob("*")):
        if not path.is_file() or path.is_symlink() or ".git" in path.parts:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        new = JOBS_ONLY.sub("", text)
        if path.suffix == ".py" and new != text:
            new = tidy_python(new)
        if path.name == "domains.py":
            new = one_blank_after_imports(new)
        if path.name == "Procfile":
            new = re.sub(r"^worker: .*\n", "", new, flags=re.M)
        if path.name == "pyproject.toml":
            new = drop_dependency(new, JOB_PACKAGES)
        if path.name == "uv.lock":
            new = prune_lock(new, JOB_PACKAGES)
        if new != text:
            path.write_text(new, encoding="utf-8")


def drop_dashboard_jobs(path: Path) -> None:
    """What `python -m devtools.dashboard` writes once its jobs-only lines are gone."""
    board = json.loads(path.read_text())
    titles = [panel["title"] for panel in board["panels"]]
    board["panels"] = board["panels"][: titles.index(DASHBOARD_JOBS_ROW)]
    variables = board["templating"]["list"]
    board["templating"]["list"] = [v for v in variables if v["name"] != "worker_job"]
    path.write_text(json.dumps(board, indent=2, sort_keys=True) + "\n")


def one_blank_after_imports(registry: str) -> str:
    """`app/domains.py` keeps one blank line between its imports and its lists."""
    return registry.replace(
        "from fastapi import APIRouter\n\n\n", "from fastapi import APIRouter\n\n"
    )


def tidy_python(text: str) -> str:
    """What a removed block leaves: at most two blank lines in a row, none at the end."""
    return re.sub(r"\n{4,}", "\n\n\n", text).rstrip("\n") + "\n"


def drop_dependency(pyproject: str, names: tuple[str, ...]) -> str:
    """The dependency lines of `names`, with the comment lines right above them."""
    for name in names:
        pyproject = re.sub(rf'(?m)(^ *#.*\n)*^ *"{name}[=<>~!]=?[^"]*",\n', "", pyproject)
    return pyproject


def prune_lock(lock: str, names: tuple[str, ...]) -> str:
    """uv.lock without `names` and every package only they needed: the root project's
    references go, then unreferenced packages until none is left."""
    head, *blocks = lock.split("\n[[package]]\n")
    for name in names:
        blocks = [
            re.sub('(?m)^ *[{] name = "' + name + '"(, [^}]*)? [}],\n', "", block)
            if _is_root(block)
            else block
            for block in blocks
        ]
    while True:
        wanted = {ref for block in blocks for ref in _references(block)}
        kept = [b for b in blocks if _is_root(b) or _name(b) in wanted]
        if len(kept) == len(blocks):
            return "\n[[package]]\n".join([head, *kept])
        blocks = kept


def _name(block: str) -> str:
    found = re.search(r'(?m)^name = "([^"]+)"', block)
    return found.group(1) if found else ""


def _is_root(block: str) -> bool:
    return 'source = { virtual = "." }' in block or 'source = { editable = "." }' in block


def _references(block: str) -> set[str]:
    own = _name(block)
    return {ref for ref in re.findall(r'\{ name = "([^"]+)"', block) if ref != own}


Rule = Callable[[str], str]


def replacements(
    reference: dict[str, object], answers: dict[str, str]
) -> tuple[list[Rule], list[Rule]]:
    """Text rewrites, most specific first (the description contains words of the name); and
    the ones uv.lock gets: its project entry and Python bound (the rest is hashes and sizes)."""
    old_py, new_py = str(reference["python_version"]), answers["python_version"]

    def literal(old: str, new: str) -> Rule:
        return lambda text: text.replace(old, new)

    def pattern(regex: str, new: str) -> Rule:
        compiled = re.compile(regex)
        return lambda text: compiled.sub(new, text)

    requires = literal(f'requires-python = ">={old_py}"', f'requires-python = ">={new_py}"')
    slug = literal(f'name = "{reference["slug"]}"', f'name = "{answers["project_slug"]}"')
    return [
        literal(str(reference["description"]), answers["description"]),
        literal(str(reference["name"]), answers["project_name"]),
        literal(str(reference["slug"]), answers["project_slug"]),
        literal(str(reference["database"]), answers["database_name"]),
        literal(f'author = "{reference["author"]}"', f'author = "{answers["author"]}"'),
        literal(f'name = "{reference["author"]}"', f'name = "{answers["author"]}"'),
        pattern(rf"(?<![\w.]){reference['port']}(?![\w])", answers["port"]),
        literal(f'python_version = "{old_py}"', f'python_version = "{new_py}"'),
        literal(f'python-version: "{old_py}"', f'python-version: "{new_py}"'),  # workflows
        requires,
        literal(f"python:{old_py}-", f"python:{new_py}-"),
        literal(f'"py{old_py.replace(".", "")}"', f'"py{new_py.replace(".", "")}"'),
        literal(f"Python {old_py}+", f"Python {new_py}+"),
    ], [requires, slug]


# Blocks marked in Markdown (<!-- example-only --> ... <!-- /example-only -->) and in code and
# configuration (# example-only ... # /example-only lines); the same for template-only.
EXAMPLE_ONLY = re.compile(r"<!-- example-only[^>]*-->.*?<!-- /example-only -->\n*", re.DOTALL)
EXAMPLE_ONLY_LINES = re.compile(
    r"^ *# example-only\n.*?^ *# /example-only\n|^[^\n]*# example-only\n", re.DOTALL | re.M
)
EMPTY_LIST = re.compile(r"\[\n\s*\]")
TEMPLATE_ONLY = re.compile(
    r"<!-- template-only[^>]*-->.*?<!-- /template-only -->\n*"
    r"|^ *# template-only\n.*?^ *# /template-only\n\n?",
    re.DOTALL | re.M,
)


def rewrite(project: Path, rules: list[Rule], lock_rules: list[Rule]) -> None:
    for path in sorted(project.rglob("*")):
        relative = path.relative_to(project).as_posix()
        if not path.is_file() or path.is_symlink() or relative in KEEP_AS_IS:
            continue
        if relative.startswith(".git/"):
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary
        new = TEMPLATE_ONLY.sub("", text)
        for rule in lock_rules if relative == "uv.lock" else rules:
            new = rule(new)
        if new != text:
            path.write_text(new, encoding="utf-8")


def rename(project: Path, old: str, new: str) -> None:
    """Files named after the service (deploy/systemd/<slug>.service) follow the new slug."""
    for path in sorted(project.rglob(f"*{old}*"), key=lambda p: len(p.parts), reverse=True):
        path.rename(path.with_name(path.name.replace(old, new)))


def relink_migrations(project: Path) -> None:
    """Each remaining migration revises the one before it (by file name, which starts with the
    date and the revision), whichever of the example's and the jobs' were removed."""
    previous = None
    for path in sorted((project / MIGRATIONS).glob("*.py")):
        text = path.read_text()
        revision = re.search(r'^revision: str = "(\w+)"', text, re.MULTILINE)
        if revision is None:
            continue
        down = "None" if previous is None else f'"{previous}"'
        text = DOWN_REVISION.sub(f"down_revision: str | None = {down}", text, count=1)
        text = REVISES.sub(f"Revises: {previous or ''}".rstrip(), text, count=1)
        path.write_text(text)
        previous = revision.group(1)


def main() -> None:
    project = Path.cwd()
    clean(project)
    if ANSWERS["include_example"] == "no":
        remove_example(project)
    if ANSWERS["include_jobs"] == "no":
        remove_jobs(project)
    relink_migrations(project)
    reference = tomllib.loads((project / "pyproject.toml").read_text())["tool"]["service"]
    rules, lock_rules = replacements(reference, ANSWERS)
    rewrite(project, rules, lock_rules)
    rename(project, str(reference["slug"]), ANSWERS["project_slug"])
    slug = ANSWERS["project_slug"]
    print(
        f"\nCreated {slug}/. Next steps:\n"
        f"  cd {slug}\n"
        "  git init && git add -A && git commit -m 'Generated from the service template'\n"
        "  make test   # lint, strict types and every test against a throwaway PostgreSQL\n"
        "  make run    # the service under Gunicorn, with a local PostgreSQL\n"
        "Keep it up to date with the template: `cruft check`, then `cruft update` "
        "(README: Keeping a service up to date).",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
