"""The layout rules of docs/architecture.md, checked on the source tree."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "finsae"


def _modules():
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _imports(path: Path):
    """(module imported, names) for every import in `path`, relative ones resolved."""
    tree = ast.parse(path.read_text())
    pkg = path.relative_to(ROOT).with_suffix("").parts[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, []
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(pkg[: len(pkg) - node.level + 1])
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            yield mod, [a.name for a in node.names]


def test_no_library_module_imports_the_command_line():
    entry = {PACKAGE / "__main__.py"}  # `python -m finsae` is the command line itself
    bad = [f"{p.relative_to(ROOT)} imports {m}" for p in _modules()
           if "cli" not in p.relative_to(PACKAGE).parts[:1] and p not in entry
           for m, _ in _imports(p) if m == "finsae.cli" or m.startswith("finsae.cli.")]
    assert not bad, bad


def test_no_private_name_imported_from_another_module():
    bad = [f"{p.relative_to(ROOT)}: {n} from {m}" for p in _modules()
           for m, names in _imports(p) if m.startswith("finsae")
           for n in names if n.startswith("_") and not n.startswith("__")]
    assert not bad, bad


def test_modules_stay_small_or_say_why():
    for p in _modules():
        n = len(p.read_text().splitlines())
        if n > 400:
            doc = ast.get_docstring(ast.parse(p.read_text())) or ""
            assert re.search(r"\b\d{3} lines\b", doc) and n <= 450, \
                f"{p.relative_to(ROOT)}: {n} lines and no reason in its docstring"


def test_architecture_doc_lists_every_module():
    doc = (ROOT / "docs" / "architecture.md").read_text()
    missing = [str(p.relative_to(ROOT)) for p in _modules()
               if str(p.relative_to(ROOT)) not in doc]
    assert not missing, f"docs/architecture.md lacks {missing}"


#: the packages in data-flow order (docs/architecture.md): each imports only from the left
FLOW = ["data", "lm", "sae", "features", "evaluate", "methods", "pairs", "pipeline", "cli"]


def test_packages_import_only_from_earlier_in_the_flow():
    bad = []
    for p in _modules():
        rel = p.relative_to(PACKAGE).parts
        if len(rel) < 2 or rel[0] not in FLOW:
            continue
        for m, _ in _imports(p):
            parts = m.split(".")
            if parts[0] == "finsae" and len(parts) > 1 and parts[1] in FLOW \
                    and FLOW.index(parts[1]) > FLOW.index(rel[0]):
                bad.append(f"{p.relative_to(ROOT)} imports {m}")
    assert not bad, bad
