"""Libraries' private names stay in the modules docs/adr/0006-private-names.md names, and
those modules find out at once when a library changes under them."""

from __future__ import annotations

import ast
import inspect
import re

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import Server, ServerState
from uvicorn_worker import UvicornWorker  # type: ignore[import-untyped]  # ships no py.typed

from tests.support import ROOT

ALLOWED = {"app/worker.py", "app/histogram_batch.py"}
ADR = ROOT / "docs" / "adr" / "0006-private-names.md"
# Not underscored, yet not public API of their libraries.
INTERNAL_MODULES = ("sqlalchemy.util", "uvicorn.protocols", "starlette.middleware.errors")
# Underscored on purpose and documented as public (namedtuple-style names on result rows).
PUBLIC_UNDERSCORED = {"_mapping", "_asdict", "_fields", "_t", "_tuple"}


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _own_private_names(trees: list[ast.AST]) -> set[str]:
    """Private names the app defines itself: its functions, methods, classes and attributes."""
    # A method overriding a library's private one counts as the app's: the override is the
    # point, and the test below checks the library still calls it.
    names: set[str] = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Attribute):
                names.add(node.target.attr)
    return {name for name in names if _is_private(name)}


def private_uses(tree: ast.AST, own: set[str]) -> list[str]:
    """Each import of a library's non-public module or name, and each underscored attribute
    read from anything but `self`/`cls`, or from them when the app does not define it."""
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules = [node.module]
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            modules, names = [alias.name for alias in node.names], []
        elif isinstance(node, ast.Attribute) and _is_private(node.attr):
            on_self = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            # On self: fine when the app defines the name (not when a library base class does).
            if not (on_self and node.attr in own) and node.attr not in PUBLIC_UNDERSCORED:
                found.append(f"line {node.lineno}: .{node.attr}")
            continue
        else:
            continue
        for module in modules:
            if module.startswith("app."):
                continue
            if any(_is_private(part) for part in module.split(".")) or module.startswith(
                INTERNAL_MODULES
            ):
                found.append(f"line {node.lineno}: import from {module}")
        found += [f"line {node.lineno}: import {name}" for name in names if _is_private(name)]
    return found


def app_sources() -> dict[str, ast.AST]:
    paths = [*sorted((ROOT / "app").rglob("*.py")), ROOT / "gunicorn_conf.py"]
    return {str(path.relative_to(ROOT)): ast.parse(path.read_text()) for path in paths}


def test_only_the_named_modules_use_private_names_of_libraries() -> None:
    sources = app_sources()
    own = _own_private_names(list(sources.values()))
    users = {
        name: uses
        for name, tree in sources.items()
        if (uses := private_uses(tree, own)) and name not in ALLOWED
    }
    assert users == {}


def test_every_allowed_module_needs_its_place_and_the_adr_names_it() -> None:
    """At most two, each still using a private name (or it leaves the list), each in the ADR."""
    sources = app_sources()
    own = _own_private_names(list(sources.values()))
    assert len(ALLOWED) <= 2
    adr = ADR.read_text()
    for name in ALLOWED:
        assert private_uses(sources[name], own), f"{name} no longer needs to be allowed"
        assert f"`{name}`" in adr, f"{ADR.name} does not name {name}"


def test_the_scan_finds_what_the_old_read_path_did() -> None:
    source = """
from sqlalchemy.util import await_, greenlet_spawn
from fastapi._compat import shared
class Reads:
    def translate(self, fairy, exc):
        fairy.dbapi_connection._handle_exception(exc)
        self._own_cache.clear()
        self._inherited_helper()
        return row._mapping
"""
    uses = private_uses(ast.parse(source), own={"_own_cache"})
    assert sorted(uses) == [
        "line 2: import from sqlalchemy.util",
        "line 3: import from fastapi._compat",
        "line 6: ._handle_exception",
        "line 8: ._inherited_helper",
    ]


async def test_the_uvicorn_internals_the_worker_relies_on_are_still_there() -> None:
    """app/worker.py overrides and reads these; a rename would silently turn draining off."""
    assert re.search(r"\bself\._serve\(\)", inspect.getsource(UvicornWorker.run))
    assert callable(UvicornWorker._install_sigquit_handler)
    assert "CONFIG_KWARGS" in vars(UvicornWorker)

    config = Config(app=_asgi_app, http="httptools")
    config.load()
    server = Server(config)
    for attribute in ("force_exit", "started", "server_state"):
        assert hasattr(server, attribute), attribute
    assert "self.servers" in inspect.getsource(Server.startup)  # set once listening
    assert "sockets" in inspect.signature(Server.shutdown).parameters
    assert hasattr(ServerState(), "connections")

    # The header-read deadline: checked on each of the main loop's ticks (every 0.1 s), from
    # the moments the protocol's parser callbacks mark.
    main_loop = inspect.getsource(Server.main_loop)
    assert "await self.on_tick(counter)" in main_loop
    assert "asyncio.sleep(0.1)" in main_loop
    assert "self.transport = transport" in inspect.getsource(HttpToolsProtocol.connection_made)

    protocol = HttpToolsProtocol(config, ServerState(), app_state={})
    assert "cycle" in vars(protocol)  # the request in progress, set per request
    assert callable(protocol.on_message_begin)
    assert callable(protocol.on_headers_complete)
    assert callable(protocol.shutdown)
    cycle_init = inspect.getsource(RequestResponseCycle.__init__)
    assert "self.keep_alive" in cycle_init
    assert "self.response_complete" in cycle_init


async def _asgi_app(scope: object, receive: object, send: object) -> None:
    """Never called: uvicorn's Config wants an app to load."""
