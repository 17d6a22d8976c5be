"""What the image installs, accounted for: `make sbom` writes a valid CycloneDX SBOM of exactly
the locked runtime packages, and `make audit` finds no known vulnerability in them."""

from __future__ import annotations

import json
import re
import tomllib
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.docs import documented, typed
from tests.support import ROOT, clean_env

# The official CycloneDX schemas, as cyclonedx-python-lib ships them (with their cross-references
# renamed to these files). Its own validator runs Python's jsonschema, whose IRI check took two
# minutes on this SBOM; jsonschema-rs checks the same formats in milliseconds.
SCHEMAS = resources.files("cyclonedx.schema") / "_res"
SCHEMA_BASE = "http://cyclonedx.org/schema/"


def cyclonedx_1_5() -> jsonschema_rs.Validator:
    def load(name: str) -> dict[str, Any]:
        schema: dict[str, Any] = json.loads((SCHEMAS / name).read_text())
        return schema

    referenced = ("spdx.SNAPSHOT.schema.json", "jsf-0.82.SNAPSHOT.schema.json")
    registry = jsonschema_rs.Registry([(SCHEMA_BASE + name, load(name)) for name in referenced])
    return jsonschema_rs.validator_for(
        load("bom-1.5.SNAPSHOT.schema.json"), registry=registry, validate_formats=True
    )


DEV_ONLY = ("pytest", "ruff", "mypy", "coverage", "cookiecutter", "zizmor", "pip-audit")


def test_make_sbom_writes_a_valid_cyclonedx_sbom_of_the_runtime_packages(tmp_path: Path) -> None:
    sbom = tmp_path / "sbom.cdx.json"
    made = typed(documented("README.md", "make sbom"), env=clean_env(SBOM=str(sbom)))
    assert made.returncode == 0, made.stderr
    document = json.loads(sbom.read_text())
    assert document["specVersion"] == "1.5"
    assert [error.message for error in cyclonedx_1_5().iter_errors(document)] == []
    components = {
        canonicalize_name(component["name"]): component["version"]
        for component in document["components"]
    }
    direct = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for requirement in map(Requirement, direct):
        assert canonicalize_name(requirement.name) in components, requirement.name
    for name in DEV_ONLY:
        assert name not in components, f"{name} is a development tool, not in the image"
    lock = (ROOT / "uv.lock").read_text()
    for name, version in components.items():  # the versions the lock installs
        try:
            assert metadata.version(name) == version, name
        except metadata.PackageNotFoundError:
            # In the SBOM for every platform, installed on none of this machine's kind.
            assert only_for_windows(lock, name), f"{name} is in the SBOM but not installed"


def only_for_windows(lock: str, name: str) -> bool:
    """Whether every dependency on `name` in the lock is marked for Windows only."""
    uses = re.findall(rf'\{{ name = "{re.escape(name)}"(, marker = "[^"]*")? \}}', lock)
    return bool(uses) and all("sys_platform == 'win32'" in marker for marker in uses)


def pypi_vulnerability_data_unreachable() -> str | None:
    """Why pip-audit's source (PyPI's JSON API, one document per release) cannot be read here,
    or None. A registry mirror that serves packages may still answer 404 for these."""
    url = f"https://pypi.org/pypi/fastapi/{metadata.version('fastapi')}/json"
    try:
        answer = httpx.get(url, timeout=10)
    except httpx.HTTPError as exc:
        return f"{url}: {type(exc).__name__}"
    return None if answer.status_code == 200 else f"{url} answers HTTP {answer.status_code}"


def test_make_audit_finds_no_known_vulnerability_in_the_runtime_packages() -> None:
    unreachable = pypi_vulnerability_data_unreachable()
    if unreachable is not None:
        pytest.skip(f"pip-audit cannot read PyPI's vulnerability data from here: {unreachable}")
    audited = typed(documented("README.md", "make audit"), env=clean_env(), timeout=300)
    output = audited.stdout + audited.stderr
    assert audited.returncode == 0, output[-4000:]
    assert "No known vulnerabilities found" in output
