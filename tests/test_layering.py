"""The import graph of ``uer/``: no cycles, and configs load without torch.

Static: every ``import`` / ``from ... import`` statement of every module, at any depth (a lazy
import inside a function is still an edge), is parsed with ``ast``; the graph must be acyclic.
(A package's ``__init__`` importing its own submodules is an edge like any other.)
Dynamic: a fresh interpreter with torch made unimportable loads every config of the zoo and
builds every tokenizer class.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "uer"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The uer modules ``path`` imports (``from uer.x import y`` counts as uer.x.y when that is a module)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in modules and t != name}
    return found


def graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imports_of(p, modules) for p in paths}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_uer():
    edges = graph()
    assert edges["uer.registry"] == {"uer.schema"}, edges["uer.registry"]
    assert "uer.model_builder" not in edges["uer.config"]
    assert find_cycle(edges) is None, " -> ".join(find_cycle(edges))


def test_schema_is_a_leaf():
    assert graph()["uer.schema"] == set()


BLOCK_TORCH = """
import sys
class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"torch is blocked in this test (imported as {name})")
sys.meta_path.insert(0, NoTorch())
"""


def run_without_torch(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK_TORCH + code], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_every_config_loads_without_torch():
    code = """
from pathlib import Path
import uer.config as c
from uer.tokenizers import TOKENIZERS
for path in sorted(Path("models").rglob("*.yaml")):
    cfg = c.load_config(path)
    assert cfg.encoder.cfg.hidden_size >= 1 and cfg.emb_size >= 1
for name in TOKENIZERS.names():
    TOKENIZERS.cls(name)
assert "torch" not in sys.modules
print("ok")
"""
    result = run_without_torch(code)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_the_torch_block_can_fail():
    result = run_without_torch("import uer.model_builder")
    assert result.returncode != 0 and "torch is blocked" in result.stderr


def test_the_task_packages_do_not_import_each_other():
    """Sentence exit (uer.fastbert) and token exit (uer.tagging) share uer.exit, never each other."""
    edges = graph()
    for source, other in (("uer.tagging", "uer.fastbert"), ("uer.fastbert", "uer.tagging")):
        leaks = sorted(f"{m} -> {t}" for m, targets in edges.items() if m == source or m.startswith(source + ".")
                       for t in targets if t == other or t.startswith(other + "."))
        assert not leaks, leaks
