"""The job notebooks: their parameters match the parameter sets, papermill lists and runs them, and each run's
executed notebook is kept beside its outputs; the same YAML works for papermill -f and the CLI's --config."""
import json, subprocess, sys
from dataclasses import fields
from pathlib import Path

import nbformat
import papermill as pm
import pytest
import yaml

from asr_finetuner.config import InputError
from asr_finetuner.jobs import JOB_CONFIGS, copy_job_notebooks, job_notebook, run_notebook

BIN = Path(sys.executable).parent


@pytest.mark.parametrize("job", list(JOB_CONFIGS))
def test_parameters_cell_lists_every_parameter_with_type_and_help(job):
    params = pm.inspect_notebook(str(job_notebook(job)))
    cls = JOB_CONFIGS[job]
    assert list(params) == [f.name for f in fields(cls)]
    for f in fields(cls):
        assert params[f.name]["help"] == f.metadata["help"] and params[f.name]["inferred_type_name"] != "None"
    nb = nbformat.read(job_notebook(job), as_version=4)
    assert sum("parameters" in c.metadata.get("tags", []) for c in nb.cells) == 1
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")


def test_job_notebooks_are_generated_from_the_parameter_sets(tmp_path):
    "scripts/make_job_notebooks.py regenerates exactly the committed notebooks (into tmp_path: the checkout is only read)."
    repo = Path(__file__).resolve().parents[1]
    committed = {p.name: p.read_text() for p in (repo / "nbs" / "jobs").glob("*.ipynb")}
    subprocess.run([sys.executable, str(repo / "scripts" / "make_job_notebooks.py"), str(tmp_path)], check=True, capture_output=True)
    # cwd=repo: nbdev_clean reads the project's settings.ini (cell ids, metadata kept) from there
    subprocess.run([str(BIN / "nbdev_clean"), "--fname", str(tmp_path)], check=True, capture_output=True, cwd=repo)
    assert sorted(committed) == ["evaluate.ipynb", "preprocess.ipynb", "train.ipynb"]
    assert {p.name: p.read_text() for p in tmp_path.glob("*.ipynb")} == committed


def test_help_notebook_lists_the_parameters():
    r = subprocess.run([str(BIN / "papermill"), "--help-notebook", str(job_notebook("train"))], capture_output=True, text=True)
    assert r.returncode == 0
    assert "learning_rate: float (default 0.001)" in r.stdout and "peak learning rate" in r.stdout


def test_copy_job_notebooks(tmp_path):
    assert sorted(p.name for p in copy_job_notebooks(tmp_path)) == ["evaluate.ipynb", "preprocess.ipynb", "train.ipynb"]


def test_job_notebooks_run_with_papermill_and_keep_their_record(tmp_path, tiny_model_dir, sample_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    common = dict(model_id=str(tiny_model_dir), dataset_name=str(sample_dir), artifact_name="it-nb", artifacts_dir=str(tmp_path / "arts"))
    config = tmp_path / "preprocess.yaml"
    config.write_text(yaml.safe_dump({**common, "max_train_samples": 8, "max_eval_samples": 4, "num_proc": 1}))
    record = run_notebook("preprocess", config, output=tmp_path / "runs" / "preprocess.ipynb")
    assert record == tmp_path / "arts" / "it-nb" / "preprocess_run.ipynb" and (tmp_path / "runs" / "preprocess.ipynb").is_file()
    nb = nbformat.read(record, as_version=4)
    text = json.dumps([c.get("outputs") for c in nb.cells])
    assert "rows in" in text and "kept" in text  # the splits table was shown
    assert "asr-row-detail" in text and "application/vnd.jupyter.widget-view+json" in text  # the explorer, its static snapshot kept
    record = run_notebook("train", model_name="tiny-nb", output_dir=str(tmp_path / "model"), max_steps=2, eval_steps=2,
                          save_steps=2, warmup_steps=0, logging_steps=1, train_batch_size=4, eval_batch_size=4,
                          generation_max_length=8, **common)
    assert record == tmp_path / "model" / "train_run.ipynb" and (tmp_path / "model" / "metrics.json").is_file()
    text = json.dumps([c.get("outputs") for c in nbformat.read(record, as_version=4).cells])
    assert "step 0 (base model)" in text and "image/png" in text and "WER" in text
    assert "asr-monitor" in text and "asr-results" in text and "asr-tryit" in text  # the widgets' static snapshots, readable without a kernel
    record = run_notebook("evaluate", model_id=str(tmp_path / "model"), artifact_name="it-nb", artifacts_dir=str(tmp_path / "arts"),
                          output_dir=str(tmp_path / "scores"), eval_batch_size=4, generation_max_length=8)
    assert record == tmp_path / "scores" / "evaluate_run.ipynb"
    scores = json.loads((tmp_path / "scores" / "metrics.json").read_text())
    assert scores["num_utterances"] == 4 and (tmp_path / "scores" / "predictions.jsonl").is_file()
    text = json.dumps([c.get("outputs") for c in nbformat.read(record, as_version=4).cells])
    assert "num_utterances" in text and "WER" in text  # the scores table and the worst predictions were shown


def test_same_yaml_for_papermill_and_the_cli(tmp_path, tiny_model_dir, sample_dir):
    "One config file, two ways in: papermill -f and asr-finetuner --config give the same artifact."
    cfg = {"model_id": str(tiny_model_dir), "dataset_name": str(sample_dir), "max_train_samples": 6, "max_eval_samples": 3, "num_proc": 1}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({**cfg, "artifact_name": "via-papermill", "artifacts_dir": str(tmp_path)}))
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({**cfg, "artifact_name": "via-cli", "artifacts_dir": str(tmp_path)}))
    r = subprocess.run([str(BIN / "papermill"), str(job_notebook("preprocess")), str(tmp_path / "out.ipynb"), "-f", str(tmp_path / "p.yaml"),
                        "-k", "python3"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    r = subprocess.run([str(BIN / "asr-finetuner"), "preprocess", "--config", str(tmp_path / "c.yaml")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    a, b = (json.loads((tmp_path / n / "manifest.json").read_text()) for n in ("via-papermill", "via-cli"))
    assert a["fingerprint"] == b["fingerprint"]


def test_invalid_parameter_fails_before_the_kernel_starts(tmp_path):
    with pytest.raises(InputError, match="max_steps=-1 must be positive"):
        run_notebook("train", model_name="m", model_id="x", dataset_name="d", artifact_name="a", max_steps=-1)


def test_cli_notebooks_lists_and_copies_the_job_notebooks(tmp_path):
    r = subprocess.run([str(BIN / "asr-finetuner"), "notebooks"], capture_output=True, text=True)
    assert r.returncode == 0 and [Path(p).name for p in r.stdout.split()] == ["preprocess.ipynb", "train.ipynb", "evaluate.ipynb"]
    assert all(Path(p).is_file() for p in r.stdout.split())
    r = subprocess.run([str(BIN / "asr-finetuner"), "notebooks", "--copy", str(tmp_path / "nbs")], capture_output=True, text=True)
    assert r.returncode == 0 and sorted(p.name for p in (tmp_path / "nbs").iterdir()) == ["evaluate.ipynb", "preprocess.ipynb", "train.ipynb"]


def test_cli_run_notebook_checks_parameters_before_the_kernel_starts(tmp_path):
    r = subprocess.run([str(BIN / "asr-finetuner"), "run-notebook", "evaluate", "-p", "model_id", "m", "-p", "dataset_name", "d",
                        "-p", "num_beams", "0"], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2 and "num_beams=0 must be positive" in r.stderr and "Traceback" not in r.stderr
