"""The rooms of the house, read from the source with ``ast`` (nothing is imported): no import circle
inside a room, imports only towards the ground (flows → nurture → stages → models → store, with the
HTTP service beside flows), and no module too long to hold one job."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The rooms each room may import (DESIGN §5); ``service`` sits beside ``flows``: neither imports the other.
MAY_IMPORT: dict[str, frozenset[str]] = {
    "store": frozenset(),
    "models": frozenset({"store"}),
    "stages": frozenset({"models", "store"}),
    "nurture": frozenset({"stages", "models", "store"}),
    "flows": frozenset({"nurture", "stages", "models", "store"}),
    "service": frozenset({"nurture", "stages", "models", "store"}),
}
MAX_LINES = 400
# The demo generator: its rules, and the vocabularies (names, titles, pages) it draws from.
LONG_BY_NATURE = {"examples/generate.py", "examples/vocabulary.py"}


def modules() -> dict[str, Path]:
    """Every module of the rooms that exist, by dotted name (``store.reader``, ``flows.cli`` for a package)."""
    found: dict[str, Path] = {}
    for room in MAY_IMPORT:
        for path in sorted((ROOT / room).rglob("*.py")) if (ROOT / room).is_dir() else []:
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of the rooms that ``name`` imports anywhere in its file (function-level imports too:
    a lazy import is still a dependency, and a circle through one is still a circle)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            # ``from store import reader`` imports the module ``store.reader``, not only the package.
            targets.update(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names)
    resolved = set()
    for target in targets:
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name:
            resolved.add(target)
    return resolved


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def room(name: str) -> str:
    return name.split(".")[0]


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(found)


def test_no_import_circle_inside_a_room() -> None:
    edges = graph()
    inside = {name: {t for t in targets if room(t) == room(name)} for name, targets in edges.items()}
    assert circles(inside) == []


def test_rooms_import_only_towards_the_ground() -> None:
    wrong = sorted(
        f"{name} imports {target}"
        for name, targets in graph().items()
        for target in targets
        if room(target) != room(name) and room(target) not in MAY_IMPORT[room(name)]
    )
    assert wrong == []


def test_no_module_over_the_limit() -> None:
    long = {
        str(path.relative_to(ROOT))
        for folder in [*MAY_IMPORT, "examples", "benchmarks"]
        if (ROOT / folder).is_dir()
        for path in (ROOT / folder).rglob("*.py")
        if len(path.read_text(encoding="utf-8").splitlines()) > MAX_LINES
    }
    assert sorted(long - LONG_BY_NATURE) == []


def test_the_checks_see_circles_and_wrong_turns() -> None:
    """The walk itself: a circle of three is one group, a tail into it is not part of it."""
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(edges) == [["a", "b", "c"]]
    known = modules()
    assert graph()["store.partitions"] >= {"store.reader", "store.event_cache"}
    assert imports("models.engine", known["models.engine"], known) >= {"models.behaviour", "models.breakdown"}
