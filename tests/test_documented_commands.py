"""The exceptions to "every documented command is run by a test" (tests/ledger.py) stay honest:
each still names a command the documents show, and the ledger's matching is exact. Whether the
others ran is checked at the end of `make test-all`, from what the tests actually executed."""

from __future__ import annotations

from tests.docs import every_command
from tests.ledger import excepted, exceptions

DOCUMENTED = [(doc, command) for doc, commands in every_command().items() for command in commands]


def test_every_exception_names_a_documented_command() -> None:
    used = {
        (document, starts)
        for (document, starts) in exceptions()
        for doc, command in DOCUMENTED
        if doc == document and excepted(doc, command) is not None and command.startswith(starts)
    }
    assert set(exceptions()) == used


def test_an_exception_covers_its_command_and_not_a_longer_word() -> None:
    assert excepted("README.md", "make test-all") is not None
    assert excepted("deploy/README.md", "kubectl apply -k deploy/k8s") is not None
    assert excepted("README.md", "make test-allx") is None
    assert excepted("README.md", "make testing") is None
    assert excepted("docs/operations.md", "make test-all") is None  # another document
