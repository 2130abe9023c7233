"""bench/common.py's one way to run a measured child: its JSON result comes back with the peak memory of its whole
process tree, and a failed child stops the benchmark with its log."""
import importlib.util, sys
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location("bench_common", Path(__file__).resolve().parents[1] / "bench" / "common.py")
common = sys.modules["bench_common"] = importlib.util.module_from_spec(spec)  # registered first: dataclasses look it up
spec.loader.exec_module(common)

# A child that starts a grandchild holding 200 MB for half a second, then writes its result.
CHILD = """
import json, subprocess, sys
hold = "x = bytearray(200 * 2**20); import time; time.sleep(0.5)"
subprocess.run([sys.executable, "-c", hold], check=True)
json.dump({"answer": 42}, open(sys.argv[1], "w"))
"""


def test_run_child_returns_the_result_with_the_process_trees_peak_memory(tmp_path):
    result = tmp_path / "result.json"
    r = common.run_child([sys.executable, "-c", CHILD, result], result, tmp_path / "log.txt")
    assert r["answer"] == 42
    assert r["peak_rss_mb"] > 200  # the grandchild's memory counts: the tree is measured, not the child alone
    assert r["wall_seconds"] >= 0.5 and r["cpu_seconds"] > 0


def test_a_failed_child_stops_with_its_log_and_a_stale_result_is_not_read(tmp_path):
    result = tmp_path / "result.json"
    result.write_text('{"answer": "from an earlier run"}')
    with pytest.raises(SystemExit, match=r"(?s)exit 3.*went wrong"):
        common.run_child([sys.executable, "-c", "import sys; print('went wrong'); sys.exit(3)"], result, tmp_path / "log.txt")
    assert not result.exists()


def test_write_result_is_what_run_child_reads(tmp_path):
    result = tmp_path / "r.json"
    code = f"import importlib.util; s = importlib.util.spec_from_file_location('c', {str(spec.origin)!r}); " \
           "import sys; c = sys.modules['c'] = importlib.util.module_from_spec(s); s.loader.exec_module(c); c.write_result(sys.argv[1], {'steps': [1.5, 2.0]})"
    assert common.run_child([sys.executable, "-c", code, result], result, tmp_path / "log.txt")["steps"] == [1.5, 2.0]
