"""Who imports whom: the domain (policies) <- the engine (notifications) <- the people's side,
the integration API, events out and operations (workspace, api, events, ops), one way; ops may
also read api and events (housekeeping, probes). No app imports config, whose settings they
read through django.conf.settings. Every import counts, those inside functions too."""

import ast
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parents[2]
APPS = ["policies", "notifications", "workspace", "ops", "api", "events"]
# What each app must not import.
FORBIDDEN = {
    "policies": {"config", "notifications", "workspace", "ops", "api", "events"},
    "notifications": {"config", "workspace", "ops", "api", "events"},
    "workspace": {"config", "ops", "api", "events"},
    "ops": {"config", "workspace"},
    "api": {"config", "workspace", "ops", "events"},
    "events": {"config", "workspace", "ops", "api"},
}


def imported_apps(path: Path) -> set[str]:
    """The top-level packages a module imports, at its top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def modules_of(app: str) -> list[Path]:
    return [
        path
        for path in sorted((BASE_DIR / app).rglob("*.py"))
        if "migrations" not in path.relative_to(BASE_DIR).parts
    ]


@pytest.mark.parametrize("app", APPS)
def test_an_app_imports_only_the_apps_below_it(app):
    wrong = {
        str(path.relative_to(BASE_DIR)): sorted(found)
        for path in modules_of(app)
        if (found := imported_apps(path) & FORBIDDEN[app])
    }

    assert modules_of(app), f"no modules found for {app}"
    assert wrong == {}


OURS = {*APPS, "config"}


def imports_of_ours(tree: ast.AST) -> list[ast.AST]:
    return [
        node
        for node in ast.walk(tree)
        if (isinstance(node, ast.Import) and any(a.name.split(".")[0] in OURS for a in node.names))
        or (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and (node.module or "").split(".")[0] in OURS
        )
    ]


@pytest.mark.parametrize("app", APPS)
def test_no_import_of_ours_hides_in_a_function_body(app):
    """An import inside a function is how a cycle gets dodged. AppConfig.ready(), where Django
    wants signal receivers connected, is the one place for it."""
    hidden = []
    for path in modules_of(app):
        for function in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if path.name == "apps.py" and function.name == "ready":
                continue
            hidden += [
                f"{path.relative_to(BASE_DIR)}:{node.lineno} in {function.name}()"
                for node in imports_of_ours(function)
            ]

    assert hidden == []


def test_an_import_in_a_function_body_is_seen():
    function = ast.parse("def f():\n    from workspace import views\n").body[0]

    assert len(imports_of_ours(function)) == 1
