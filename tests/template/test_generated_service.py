"""One generated service, as a team gets it and grows it: without the example domain, with other
answers than the defaults; a domain added by the README's walkthrough (its package, two lines in
`app/domains.py`, `make revision`, its tests); then its own `make test`, and a boot under
Gunicorn serving the new domain."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

import httpx
import pytest

from devtools.pgcluster import PgCluster
from devtools.ports import free_port
from tests import containers
from tests.docs import documented, typed
from tests.support import wait_for
from tests.template.support import (
    cookiecutter,
    example_traces,
    failures,
    git,
    identity_left,
    run_in,
    tool_env,
)

pytestmark = pytest.mark.slow
ANSWERS = (
    "project_name=My Billing API",
    "port=9123",
    "database_name=billing",
    "include_example=no",
)
SLUG = "my-billing-api"
WALKTHROUGH = Path(__file__).with_name("walkthrough")  # the domain's files, as a team writes them
DOMAINS = """\
from app.orders import models as orders_models
from app.orders import router as orders_router

ROUTERS: list[APIRouter] = [
    orders_router.router,
]
# Imported for their tables on `Base.metadata`: Alembic's autogenerate and the tests read it.
MODELS: list[ModuleType] = [
    orders_models,
]
"""


def generate(base: Path) -> Path:
    generated = cookiecutter(Path(__file__).parents[2], base, *ANSWERS)
    assert generated.returncode == 0, generated.stderr
    project = base / SLUG
    assert identity_left(project) == []
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    assert pyproject["project"]["name"] == SLUG
    assert pyproject["tool"]["service"]["database"] == "billing"
    assert "PORT=9123" in (project / ".env.example").read_text()
    assert "template-only" not in (project / "README.md").read_text()
    assert example_traces(project) == []
    git("init", "--quiet", cwd=project)
    git("add", "-A", cwd=project)
    git("commit", "--quiet", "-m", "generated", cwd=project)
    return project


def write_the_domain(project: Path, *parts: str) -> None:
    """The walkthrough's files under `parts` of WALKTHROUGH, copied as a person writes them."""
    for source in sorted(WALKTHROUGH.joinpath(*parts).rglob("*.py.txt")):
        target = project / source.relative_to(WALKTHROUGH).with_suffix("")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(source.read_text())


def register_the_domain(project: Path) -> None:
    """`app/domains.py`: the imports, the router in ROUTERS, the models in MODELS."""
    registry = project / "app" / "domains.py"
    text = registry.read_text()
    start = text.index("ROUTERS: list[APIRouter] = []")
    models = "MODELS: list[ModuleType] = []\n"
    end = text.index(models) + len(models)
    imports = text[:start].rstrip("\n")
    # The new imports join the service's own (`from app.…`), or start that group.
    joined = "\n" if imports.splitlines()[-1].startswith("from app.") else "\n\n"
    registry.write_text(imports + joined + DOMAINS + text[end:])


def changed_files(project: Path) -> list[str]:
    listed = git("status", "--porcelain", "--untracked-files=all", cwd=project)
    return sorted(line[3:] for line in listed.splitlines())


@pytest.mark.timeout(900)
def test_a_domain_added_by_the_readme_passes_the_services_own_tests_and_serves(
    pg: PgCluster, tmp_path: Path
) -> None:
    project = generate(tmp_path)
    write_the_domain(project, "app")
    register_the_domain(project)
    # A model without its migration: the fast tier's drift test says so.
    assert run_in(project, "make", "install").returncode == 0
    drift = run_in(project, ".venv/bin/pytest", "-q", "tests/integration/test_migrations.py")
    assert drift.returncode != 0
    assert "a model changed without a migration" in drift.stdout

    revision_command = documented("README.md", "make revision")
    revision = typed(revision_command, env=tool_env(), cwd=project, timeout=300)
    assert revision.returncode == 0, revision.stdout + revision.stderr
    (migration,) = (project / "migrations" / "versions").glob("*_add_orders.py")
    assert "op.create_table('orders'" in migration.read_text()
    write_the_domain(project, "tests")

    touched = changed_files(project)
    assert touched == sorted(
        [
            *(f"app/orders/{name}.py" for name in ("__init__", "errors", "models", "repository")),
            *(f"app/orders/{name}.py" for name in ("router", "schemas", "service")),
            "app/domains.py",
            f"migrations/versions/{migration.name}",
            "tests/integration/test_orders.py",
        ]
    )
    print(f"\nthe walkthrough touched {len(touched)} files: {touched}")

    tested = typed(documented("README.md", "make test"), env=tool_env(), cwd=project, timeout=600)
    (tmp_path / "make-test.log").write_text(tested.stdout + tested.stderr)
    assert tested.returncode == 0, failures(tested.stdout + tested.stderr)
    assert "tests/integration/test_orders.py ..." in tested.stdout
    assert not (project / "tests" / "template").exists()
    boot_and_order(project, pg)
    build_and_compose_under_its_own_name(project)


# What its name changes: the image's tag, the Compose project, the database. The rest of the
# container tests is the template's own, run by test-all on the template's image.
UNDER_ITS_NAME = (
    "tests/deploy/test_image.py",
    "tests/deploy/test_compose.py::test_compose_up_migrates_and_serves_on_the_published_port",
)


def build_and_compose_under_its_own_name(project: Path) -> None:
    """Its image tests and `docker compose up`, on the run's Docker engine."""
    tested = run_in(
        project, ".venv/bin/pytest", "-p", "no:cacheprovider", *UNDER_ITS_NAME, timeout=900
    )
    assert tested.returncode == 0, failures(tested.stdout + tested.stderr)
    docker = containers.shared()
    if docker.problem is None:  # then they ran, under its own name
        for image in (SLUG, f"{SLUG}:local"):  # `docker build -t`, then `docker compose up`
            assert docker.run(f"docker image inspect {image}").returncode == 0, image


def boot_and_order(project: Path, pg: PgCluster) -> None:
    """The production command on the session's cluster, in a database of the service's own."""
    pg.ensure_database("billing")
    port = free_port()
    env = tool_env() | {
        "APP_ENV": "test",
        "DATABASE_URL": pg.url("billing"),
        "DB__SSLMODE": "verify-full",
        "DB__SSLROOTCERT": str(pg.ca_file),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WEB_CONCURRENCY": "1",
    }
    python = str(project / ".venv" / "bin" / "python")
    subprocess.run([python, "-m", "alembic", "upgrade", "head"], cwd=project, env=env, check=True)
    with (project / "gunicorn.log").open("w") as log:
        server = subprocess.Popen(
            [python, "-m", "gunicorn", "-c", "gunicorn_conf.py", "app.main:app"],
            cwd=project,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(f"{base}/ready", timeout=30)
        assert httpx.get(f"{base}/openapi.json").json()["info"]["title"] == "My Billing API"
        order, key = {"reference": "R-1", "quantity": 2}, {"Idempotency-Key": '"order-r-1"'}
        created = httpx.post(f"{base}/api/v1/orders", json=order, headers=key)
        assert created.status_code == 201, created.text
        retried = httpx.post(f"{base}/api/v1/orders", json=order, headers=key)
        assert (retried.content, retried.headers["idempotent-replayed"]) == (
            created.content,
            "true",
        )
        assert httpx.get(f"{base}/api/v1/orders/{created.json()['id']}").json()["quantity"] == 2
    finally:
        server.terminate()
        server.wait(timeout=30)
