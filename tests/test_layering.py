"""The layers import one way: targets/ (the systems under test) knows nothing of the harness, graphs/ and
devservers/ know nothing of the benchmark or of each other, and the CLI's command modules share code only through
library modules, never by importing one another."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: package -> the top-level packages it must never import
FORBIDDEN = {
    "targets": {"bench", "graphs", "devservers"},
    "graphs": {"bench", "devservers"},
    "devservers": {"bench", "graphs"},
}
#: modules of bench/cli/ that are shared helpers, not commands
CLI_HELPERS = {"__init__", "__main__", "main", "options"}


def imports(path: Path) -> set[str]:
    """The absolute names of the modules ``path`` imports (``from a import b`` counts as ``a`` and ``a.b``)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_downwards(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no Python files under {package}/"
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in files
        for name in sorted(imports(path))
        if name.split(".")[0] in FORBIDDEN[package]
    ]
    assert offenders == []


def test_cli_command_modules_do_not_import_each_other() -> None:
    commands = {p.stem for p in (ROOT / "bench" / "cli").glob("*.py")} - CLI_HELPERS
    assert {"bench", "serve", "worker"} <= commands
    offenders = [
        f"bench/cli/{module}.py imports {name}"
        for module in sorted(commands)
        for name in sorted(imports(ROOT / "bench" / "cli" / f"{module}.py"))
        if name.startswith("bench.cli.") and name.split(".")[2] in commands - {module}
    ]
    assert offenders == []
