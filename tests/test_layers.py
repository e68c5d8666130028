"""The package's layering: no import cycles, and every import points down the layer rule.

Every import counts, at module level or inside a function, absolute or relative.
The rule (docs/design.md, "Layers") names, for each part of tgt_jax, the parts it
may import; a part is a sub-package (data, engine, ...) or a top-level module.
Inside a part, modules stand side by side: one imports a sibling only through the
part's shared modules, or a helper that belongs to it alone, unless it is one of the
part's entry points (the modules that choose among the others by name).
"""

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "tgt_jax"

BASE = {"sharding", "losses", "metrics", "checkpointing", "workdir"}
# part → the parts it may import (besides itself).
ALLOWED = {
    "main": {"jobs", "checkpointing"},
    "jobs": {"tasks", "teachers", "engine", "models", "data", "workdir"} | BASE,
    "tasks": {"teachers", "evaluation", "engine", "tgt", "data", "models"} | BASE,
    "teachers": {"evaluation", "engine", "tgt", "data", "models"} | BASE,
    "engine": {"checkpointing", "metrics", "sharding", "workdir"},
    "evaluation": {"data", "sharding", "losses"},
    "tgt": {"losses"},
    "models": {"sharding"},
    "data": {"sharding"},
    "configlib": set(),
    "sharding": set(),
    "losses": set(),
    "metrics": set(),
    "checkpointing": set(),
    "workdir": set(),
}

# part → its modules (relative names) that any module of the part may import.
SHARED = {
    "data": {"memory", "batches", "subsets", "splits", "augment", "tfds_preprocess",
             "tfds_subsets", "tfds_input", "tfds_fashion_mnist", "wordnet"},
    "tasks": {"method", "cache", "pretrained_student"},
    "teachers": {"generative", "training", "text", "text_encoder", "pretrained", "loading",
                 "kinds", "diffusion"},
    "models": {"weight_files", "input_spec", "text", "resnet"},
}
# A helper → the one sibling it belongs to.
HELPERS = {"tasks.probe": "tasks.classification", "tasks.retrieval_step": "tasks.retrieval"}
# Entry points: they pick a sibling by name (a dataset, a teacher kind, a model), so they
# may import any of them. "models" is the package itself: the registry of models by name.
ENTRY_POINTS = {"data.sources", "data.datasets", "teachers.kinds", "teachers.loading",
                "teachers.retrieval", "models"}


def _modules(root=None):
  root = root or PACKAGE
  mods = {}
  for path in root.rglob("*.py"):
    parts = path.relative_to(root.parent).with_suffix("").parts
    name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    mods[name] = path
  return mods


def _resolve(name, mods):
  while name and name not in mods:
    name = name.rpartition(".")[0]
  return name or None


def import_graph(root=None):
  """{module: set of modules of `root` (default tgt_jax) it imports}, function-level imports
  included."""
  root = root or PACKAGE
  mods = _modules(root)
  graph = {m: set() for m in mods}
  for module, path in mods.items():
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.Import):
        targets = [alias.name for alias in node.names]
      elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
          anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
          base = ".".join(anchor + ([node.module] if node.module else []))
        targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
      else:
        continue
      for target in targets:
        resolved = _resolve(target, mods)
        if resolved and resolved != module and resolved.startswith(root.name):
          graph[module].add(resolved)
  return graph


def _part(module):
  parts = module.split(".")
  return parts[1] if len(parts) > 1 else "tgt_jax"


def find_cycles(graph):
  """Each strongly connected set of 2+ modules (Tarjan), as a sorted list."""
  index, low, stack, on_stack, cycles = {}, {}, [], set(), []

  def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in sorted(graph[v]):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      component = []
      while True:
        w = stack.pop()
        on_stack.discard(w)
        component.append(w)
        if w == v:
          break
      if len(component) > 1:
        cycles.append(sorted(component))

  for v in sorted(graph):
    if v not in index:
      visit(v)
  return cycles


def test_no_import_cycles():
  assert find_cycles(import_graph()) == []


def test_no_import_cycles_among_the_benchmarks():
  assert find_cycles(import_graph(PACKAGE.parent / "benchmarks")) == []


def test_every_import_follows_the_layer_rule():
  graph = import_graph()
  parts = {_part(m) for m in graph} - {"tgt_jax"}
  assert parts <= set(ALLOWED), f"parts without a rule: {sorted(parts - set(ALLOWED))}"
  wrong = sorted(f"{m} → {t}" for m, targets in graph.items() for t in targets
                 if _part(t) != _part(m) and "tgt_jax" not in (_part(m), _part(t))
                 and _part(t) not in ALLOWED[_part(m)])
  assert wrong == []


def _relative(module):
  return module.split(".", 1)[1] if "." in module else module


def sideways_imports(graph):
  """Imports between siblings of one part that the part's SHARED, HELPERS and ENTRY_POINTS do
  not allow, as sorted 'module → sibling' lines. The part's package (its __init__) is not a
  sibling: `from tgt_jax.data import x` runs it."""
  wrong = []
  for module, targets in graph.items():
    part, importer = _part(module), _relative(module)
    for target in targets:
      name = _relative(target)
      if (_part(target) != part or part == "tgt_jax" or target == f"tgt_jax.{part}"
          or importer in ENTRY_POINTS or name.split(".", 1)[1] in SHARED.get(part, ())
          or HELPERS.get(name) == importer):
        continue
      wrong.append(f"{module} → {target}")
  return sorted(wrong)


def test_siblings_import_each_other_only_through_shared_modules():
  assert sideways_imports(import_graph()) == []


def test_every_listed_shared_module_helper_and_entry_point_exists():
  modules = {_relative(m) for m in import_graph()}
  named = ({f"{part}.{name}" for part, names in SHARED.items() for name in names}
           | set(HELPERS) | set(HELPERS.values()) | ENTRY_POINTS)
  assert sorted(named - modules) == []


def test_the_checker_refuses_a_task_importing_another_task(tmp_path, monkeypatch):
  package = tmp_path / "tgt_jax"
  (package / "tasks").mkdir(parents=True)
  for name in ("__init__", "tasks/__init__", "tasks/cache", "tasks/probe"):
    (package / f"{name}.py").write_text("")
  (package / "tasks" / "synthesize.py").write_text("from tgt_jax.tasks import cache\n")
  (package / "tasks" / "classification.py").write_text(
      "from tgt_jax.tasks import cache, probe, synthesize\n")
  (package / "tasks" / "retrieval.py").write_text("from tgt_jax.tasks import probe\n")
  monkeypatch.setattr(__import__(__name__), "PACKAGE", package)
  assert sideways_imports(import_graph()) == [
      "tgt_jax.tasks.classification → tgt_jax.tasks.synthesize",
      "tgt_jax.tasks.retrieval → tgt_jax.tasks.probe"]


def test_only_main_imports_jobs():
  graph = import_graph()
  assert sorted(m for m, targets in graph.items() if "tgt_jax.jobs" in targets) == [
      "tgt_jax.main"]


def test_the_checker_sees_function_level_and_relative_imports(tmp_path, monkeypatch):
  package = tmp_path / "tgt_jax"
  (package / "data").mkdir(parents=True)
  (package / "__init__.py").write_text("")
  (package / "data" / "__init__.py").write_text("")
  (package / "data" / "a.py").write_text("def f():\n  from . import b\n")
  (package / "data" / "b.py").write_text("from tgt_jax.data import a\n")
  monkeypatch.setattr(__import__(__name__), "PACKAGE", package)
  assert find_cycles(import_graph()) == [["tgt_jax.data.a", "tgt_jax.data.b"]]
