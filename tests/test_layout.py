"""The package's layout rule, read from its imports (ast), so that it holds as the code grows.

- Three floors: base modules (notebooks 00-19), jobs (20-29: preprocess, train, evaluate, transcribe, export) and
  the top level (30 and up: jobs, cli, explore, demo).
- A base module never imports a job or the top level; a job never imports the top level.
- No import cycle, between any modules.
- No module of the package is imported inside a function; the only imports left inside functions are of the
  optional third-party packages in LAZY.
"""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "asr_finetuner"
JOBS = {"preprocess", "train", "evaluate", "transcribe", "export"}
TOP = {"cli", "jobs", "explore", "demo"}
FLOORS = {"base": (0, 19), "job": (20, 29), "top": (30, 99)}  # the notebook numbers of each floor
# Imported where they are used: optional extras (wandb, peft, the export runtimes: their absence is a clear error at
# the call, not at import) and the display and notebook-running packages, which only the widgets, plots and job
# runner need and which take about a second to import.
LAZY = {"wandb", "peft", "bitsandbytes", "ctranslate2", "faster_whisper", "pywhispercpp", "matplotlib", "IPython", "papermill", "silero_vad"}


def floor(module:str)->str:
    return "job" if module in JOBS else "top" if module in TOP else "base"


def package_imports(tree:ast.Module, module:str)->tuple:
    "(modules of the package imported at module level, {function: modules and packages imported inside it})."
    top, inner = set(), {}
    def names(node)->set:
        if isinstance(node, ast.Import): return {a.name for a in node.names}
        if node.level or node.module == "asr_finetuner":  # from . import x, from .x import y, from asr_finetuner import x
            return {f"asr_finetuner.{node.module.removeprefix('asr_finetuner')}".rstrip(".") if node.module and node.module != "asr_finetuner"
                    else f"asr_finetuner.{a.name}" for a in node.names}
        return {node.module}
    def ours(found:set)->set:
        return {n.split(".")[1] for n in found if n.startswith("asr_finetuner.") and n.split(".")[1] != "_modidx"} | \
               {"__init__" for n in found if n == "asr_finetuner"}
    for node in tree.body:
        for n in ast.walk(node):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for i in ast.walk(n):
                    if isinstance(i, (ast.Import, ast.ImportFrom)): inner.setdefault(n.name, set()).update(names(i))
        if isinstance(node, (ast.Import, ast.ImportFrom)): top |= ours(names(node))
        elif isinstance(node, (ast.If, ast.Try)):  # guarded module-level imports count too
            top |= ours(set().union(*[names(i) for i in ast.walk(node) if isinstance(i, (ast.Import, ast.ImportFrom))]))
    return top - {module}, inner


def read_package(folder:Path)->dict:
    "module -> {imports, inner, notebook}: what each module of the package imports, and the notebook it is made from."
    out = {}
    for path in sorted(folder.glob("*.py")):
        if path.stem == "_modidx": continue
        text = path.read_text()
        top, inner = package_imports(ast.parse(text), path.stem)
        marks = [line.split("../nbs/")[1].split(".ipynb")[0] for line in text.splitlines() if line.startswith("# %% ../nbs/")]
        out[path.stem] = {"imports": top, "inner": inner, "notebook": marks[0] if marks else None}
    for info in out.values():  # a name of the package that is not a module (`from . import __version__`) is the package's own
        info["imports"] = {m if m in out else "__init__" for m in info["imports"]}
    return out


def cycles(graph:dict)->list:
    "Every import cycle, each as the modules along it (depth-first search; a cycle is reported once per entry point)."
    found, state = [], {}
    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open": found.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state: visit(nxt, path + [nxt])
        state[node] = "done"
    for node in sorted(graph):
        if node not in state: visit(node, [node])
    return found


def violations(package:dict)->list:
    "Every breach of the layout rule, as sentences."
    out = []
    for module, info in package.items():
        for imported in sorted(info["imports"]):
            if floor(module) == "base" and floor(imported) != "base":
                out.append(f"base module {module} imports the {floor(imported)} module {imported}")
            if floor(module) == "job" and floor(imported) == "top":
                out.append(f"job {module} imports the top-level module {imported}")
        for function, found in sorted(info["inner"].items()):
            for name in sorted(found):
                root = name.split(".")[0]
                if root == "asr_finetuner": out.append(f"{module}.{function} imports {name} inside a function")
                elif root not in LAZY: out.append(f"{module}.{function} imports {root} inside a function (not an optional package)")
        if info["notebook"] and module != "__init__":
            number, (low, high) = int(info["notebook"].split("_")[0]), FLOORS[floor(module)]
            if not low <= number <= high:
                out.append(f"{module} ({floor(module)}) is made from notebook {info['notebook']}, outside {low:02d}-{high:02d}")
    out += [f"import cycle: {' -> '.join(c)}" for c in cycles({m: i["imports"] for m, i in package.items()})]
    return out


def test_the_package_keeps_the_layout_rule():
    package = read_package(PACKAGE)
    assert {"decoding", "runtimes", "scoring", "eval_data", "train_outputs"} <= set(package)  # the base modules of inference
    assert violations(package) == []


def test_the_rule_checker_finds_each_kind_of_breach(tmp_path):
    "A synthetic package with one breach of each kind: the checker names them all."
    (tmp_path / "decoding.py").write_text("# %% ../nbs/09_decoding.ipynb 1\nfrom .evaluate import x\nfrom .scoring import y\n")
    (tmp_path / "scoring.py").write_text("# %% ../nbs/13_scoring.ipynb 1\nfrom asr_finetuner import decoding\n")
    (tmp_path / "evaluate.py").write_text("# %% ../nbs/05_evaluate.ipynb 1\nfrom .cli import main\n"
                                          "def f():\n    from asr_finetuner.decoding import x\n    import pandas\n    import wandb\n")
    (tmp_path / "cli.py").write_text("# %% ../nbs/31_cli.ipynb 1\nimport json\n")
    found = violations(read_package(tmp_path))
    assert found == ["base module decoding imports the job module evaluate",
                     "job evaluate imports the top-level module cli",
                     "evaluate.f imports asr_finetuner.decoding inside a function",
                     "evaluate.f imports pandas inside a function (not an optional package)",
                     "evaluate (job) is made from notebook 05_evaluate, outside 20-29",
                     "import cycle: decoding -> scoring -> decoding"]


@pytest.mark.parametrize("graph, expected", [({"a": {"b"}, "b": {"c"}, "c": set()}, []),
                                             ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, [["a", "b", "c", "a"]])])
def test_cycles(graph, expected):
    assert cycles(graph) == expected


def notebook_modules(nbs:Path)->dict:
    "notebook name -> the module it exports (its `#| default_exp`)."
    import json
    out = {}
    for path in sorted(nbs.glob("[0-9][0-9]_*.ipynb")):
        first = "".join(json.loads(path.read_text())["cells"][0]["source"])
        out[path.stem] = first.split("default_exp")[1].split()[0] if "default_exp" in first else None
    return out


def listed_notebooks(text:str)->dict:
    "notebook name -> module, from the rows of a notebook table (`| `NN_name` | `module` | ... |`)."
    import re
    return dict(re.findall(r"^#? ?\| `(\d\d_\w+)` \| `(\w+)` \|", text, re.M))


def test_the_readme_and_the_index_list_every_notebook_and_its_module():
    root = PACKAGE.parent
    expected = notebook_modules(root / "nbs")
    assert len(expected) > 25 and expected["13_scoring"] == "scoring"
    assert listed_notebooks((root / "README.md").read_text(encoding="utf-8")) == expected
    index = "\n".join("".join(c["source"]) for c in __import__("json").loads((root / "nbs" / "index.ipynb").read_text())["cells"])
    assert listed_notebooks(index) == expected


@pytest.mark.xdist_group("layout")
def test_xdist_groups_hold_under_loadgroup(request):
    "`make test` runs `--dist loadgroup`: a test of a group must carry it, or each worker rebuilds the fixtures a group shares."
    if not getattr(request.config.option, "loadgroup", False): pytest.skip("not run by pytest-xdist with --dist loadgroup")
    assert request.node.nodeid.endswith("@layout"), "pytest-xdist ignores xdist_group under this pytest (pytest-xdist#1386): keep pytest<9.2"
