"""The README's parameter tables are what scripts/make_readme_tables.py makes from the parameter sets (checked in memory:
the tests never write into the checkout)."""
import importlib.util, subprocess, sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "make_readme_tables.py"
README = (REPO / "README.md").read_text(encoding="utf-8")


def load_script():
    spec = importlib.util.spec_from_file_location("make_readme_tables", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tables = load_script()


def test_readme_parameter_tables_are_generated_from_the_dataclasses():
    assert tables.with_tables(README) == README, "run `python scripts/make_readme_tables.py` (or `make export`)"


def test_a_stale_table_is_rewritten_and_the_rest_kept():
    stale = README.replace("| `learning_rate` | `1e-05` | peak learning rate |", "| `learning_rate` | `1e-4` | the learning rate |")
    stale = stale.replace("## Layout", "## Layout (edited by hand)")
    assert stale.count("the learning rate") == 1
    assert tables.with_tables(stale) == README.replace("## Layout", "## Layout (edited by hand)")


def test_markers_are_required():
    with pytest.raises(ValueError, match="must hold the markers"):
        tables.with_tables(README.replace(tables.END, ""))


def test_check_fails_on_a_stale_readme_and_writes_nothing(tmp_path):
    stale = tmp_path / "README.md"
    stale.write_text(README.replace("| `seed` | `42` | seed for the capped subsets |", ""), encoding="utf-8")
    before = stale.read_text(encoding="utf-8")
    r = subprocess.run([sys.executable, str(SCRIPT), "--check", "--readme", str(stale)], capture_output=True, text=True)
    assert r.returncode == 1 and "out of date" in r.stderr
    assert stale.read_text(encoding="utf-8") == before
    subprocess.run([sys.executable, str(SCRIPT), "--readme", str(stale)], check=True, capture_output=True)
    assert stale.read_text(encoding="utf-8") == README
