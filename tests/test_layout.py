"""The house plan holds: imports run handlers -> service -> models, with no cycle anywhere.

Read from the source with `ast` (every import, at module level or inside a function), so a deferred
import cannot hide a cycle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import ROOT

PACKAGES = ("service", "handlers", "models")
# The composition root: builds the app from the handlers, so it alone may import them.
ROOT_MODULES = {"service.app", "service.__main__"}
# The life cycle and what handlers reach: they alone wire the subsystems together.
WIRING = {"service.app", "service.__main__", "service.context", "service.lifecycle", "service.health"}
FOR_HANDLERS = {"service.context", "service.health"}  # the running service, as handlers see it
SUBSYSTEMS = ("service.realtime", "service.payments")
# Third-party clients each owned by one module.
OWNERS = {"pymongo": "service.database", "bson": "service.database", "braintree": "service.payments.gateway",
          "aiosmtplib": "service.mail.smtp", "pycrdt": "service.coediting.replica"}  # fmt: skip


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))}


def imported(name: str, path: Path, known: set[str]) -> Iterator[str]:
    """Every module `name` imports: ours resolved to the module (or package) they name, others as is."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                yield candidate if candidate in known else base


def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: set(imported(name, path, known)) for name, path in found.items()}


def ours(graph: dict[str, set[str]], name: str) -> set[str]:
    return {target for target in graph[name] if target in graph}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module, or a module importing itself (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in ours(graph, node):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1 or node in graph[node]:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def layer(name: str) -> str:
    return name.split(".")[0]


def violations(graph: dict[str, set[str]]) -> list[str]:
    """Every import that runs against the plan, as `importer -> imported: why`."""
    found = []
    for name in sorted(graph):
        for target in sorted(graph[name]):
            why = _why_not(name, target)
            if why:
                found.append(f"{name} -> {target}: {why}")
    return found


def _why_not(name: str, target: str) -> str | None:
    top = target.split(".")[0]
    if top in OWNERS and name != OWNERS[top]:
        return f"only {OWNERS[top]} imports {top}"
    if top not in PACKAGES:
        return None
    if layer(name) == "models" and layer(target) != "models":
        return "models import nothing of the service or the handlers"
    if layer(name) == "service" and layer(target) == "handlers" and name not in ROOT_MODULES:
        return "service never imports handlers (only the app factory does)"
    if target in WIRING - FOR_HANDLERS and name not in WIRING:
        return "only the app factory imports the life cycle (handlers reach the service through service.context)"
    if target in FOR_HANDLERS and layer(name) == "service" and name not in WIRING:
        return "service code is handed what it needs; only handlers and the wiring read the context"
    subsystem = next((s for s in SUBSYSTEMS if target == s or target.startswith(s + ".")), None)
    if subsystem and name not in WIRING and not name.startswith(subsystem) and layer(name) == "service":
        return f"only the wiring imports {subsystem} from elsewhere in service/"
    return None


def test_no_module_of_the_service_takes_part_in_an_import_cycle() -> None:
    assert cycles(graph()) == []


def test_imports_run_handlers_to_service_to_models_and_subsystems_stay_apart() -> None:
    assert violations(graph()) == []


def test_the_driver_the_payment_sdk_the_smtp_client_and_the_crdt_engine_are_each_imported_by_one_module() -> None:
    users = {top: sorted(n for n, targets in graph().items() if any(t.split(".")[0] == top for t in targets))
             for top in OWNERS}  # fmt: skip
    assert users == {"pymongo": ["service.database"], "bson": ["service.database"],
                     "braintree": ["service.payments.gateway"], "aiosmtplib": ["service.mail.smtp"],
                     "pycrdt": ["service.coediting.replica"]}  # fmt: skip


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"models.common": {"service.errors"}}, "models.common -> service.errors: models import nothing"),
        ({"service.accounts": {"handlers.auth"}}, "service.accounts -> handlers.auth: service never imports"),
        ({"handlers.auth": {"service.app"}}, "handlers.auth -> service.app: only the app factory"),
        ({"service.rooms": {"service.context"}}, "service.rooms -> service.context: service code is handed"),
        ({"service.documents": {"service.realtime.hub"}}, "service.documents -> service.realtime.hub: only the"),
        ({"service.realtime.hub": {"service.payments.worker"}}, "service.realtime.hub -> service.payments.worker"),
        ({"service.rooms": {"pymongo"}}, "service.rooms -> pymongo: only service.database imports pymongo"),
    ],
)
def test_the_checks_catch_an_upward_import(extra: dict[str, set[str]], expected: str) -> None:
    planted = graph()
    for name, targets in extra.items():
        planted[name] = planted[name] | targets
    assert any(line.startswith(expected) for line in violations(planted)), violations(planted)


def test_the_checks_catch_a_cycle() -> None:
    planted = graph()
    planted["service.config"] = planted["service.config"] | {"service.app"}  # app -> ... -> config -> app
    assert any("service.app" in group and "service.config" in group for group in cycles(planted))


def test_an_import_inside_a_function_counts_like_one_at_the_top(tmp_path: Path) -> None:
    module = tmp_path / "hub.py"
    module.write_text("def later():\n    from ..context import Context\n    from . import board\n")
    known = {"service.context", "service.realtime.board"}
    assert set(imported("service.realtime.hub", module, known)) == known
