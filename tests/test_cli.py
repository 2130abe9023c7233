"""The CLI's error policy, through a real subprocess: exit code 2, one message, no traceback unless --debug;
and `--help` and parameter errors answer without importing the heavy libraries."""
import json, subprocess, sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent / "asr-finetuner"
TRAIN_REQUIRED = ["--model_name", "m", "--model_id", "openai/whisper-tiny", "--dataset_name", "d", "--artifact_name", "a"]


def run_cli(*args, cwd=None):
    return subprocess.run([str(BIN), *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_invalid_parameter_exits_2_with_message_and_no_traceback():
    r = run_cli("train", *TRAIN_REQUIRED, "--max_steps", "-5")
    assert r.returncode == 2
    assert "max_steps=-5 must be positive" in r.stderr
    assert "Traceback" not in r.stderr


def test_debug_shows_the_traceback():
    r = run_cli("train", *TRAIN_REQUIRED, "--learning_rate", "fast", "--debug")
    assert r.returncode == 2
    assert "Traceback (most recent call last)" in r.stderr
    assert "learning_rate='fast' is not a valid float" in r.stderr


def test_config_file_values_are_overridden_by_flags(tmp_path):
    cfg = tmp_path / "train.yaml"
    cfg.write_text("model_name: m\nmodel_id: x\ndataset_name: d\nartifact_name: a\ntrain_batch_size: 4\n")
    r = run_cli("train", "--config", str(cfg), "--train_batch_size", "0")
    assert r.returncode == 2 and "train_batch_size=0 must be positive" in r.stderr


@pytest.mark.parametrize("content, message", [
    ("model_name: [unclosed\n", "is not valid YAML or JSON"),
    ("learning_rat: 1e-4\n", "did you mean 'learning_rate'"),
])
def test_bad_config_file_exits_2(tmp_path, content, message):
    cfg = tmp_path / "train.yaml"
    cfg.write_text(content)
    r = run_cli("train", "--config", str(cfg))
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr


def test_missing_required_parameters_are_named():
    r = run_cli("preprocess", "--artifact_name", "a")
    assert r.returncode == 2
    assert "Missing required parameter(s): model_id, dataset_name" in r.stderr


def test_help_lists_flags_with_their_help_text():
    r = run_cli("train", "--help")
    assert r.returncode == 0
    assert "--learning_rate" in r.stdout and "peak learning rate" in r.stdout and "(default: 1e-05)" in r.stdout
    r = run_cli("preprocess", "--help")
    assert "--artifact_name" in r.stdout and "(required)" in r.stdout


def test_unknown_flag_is_a_usage_error():
    r = run_cli("train", "--learning_rat", "1e-4")
    assert r.returncode == 2 and "unrecognized arguments" in r.stderr


# --- start-up: --help and parameter errors import no heavy library -----------------------------------------

HEAVY = ("torch", "transformers", "datasets", "numpy", "pandas", "pyarrow")
LIGHT_COMMANDS = {
    "help": (["--help"], 0, "preprocess"),
    "train-help": (["train", "--help"], 0, "--learning_rate"),
    "bad-parameter": (["train", "--model_name", "x", "--model_id", "y", "--dataset_name", "d", "--artifact_name", "a",
                       "--learning_rate", "-1"], 2, "learning_rate=-1.0 must be above 0"),
    "unknown-language": (["evaluate", "--model_id", "m", "--dataset_name", "d", "--language", "Italain"], 2, "Did you mean Italian"),
}
PROBE = """import json, sys
from asr_finetuner.cli import main
try: code = main(json.loads(sys.argv[1]))
except SystemExit as e: code = e.code
print(json.dumps({"code": code, "heavy": sorted(m for m in json.loads(sys.argv[2]) if m in sys.modules)}), file=sys.stderr)
"""


@pytest.mark.parametrize("argv, code, message", LIGHT_COMMANDS.values(), ids=list(LIGHT_COMMANDS))
def test_help_and_parameter_errors_import_no_heavy_library(argv, code, message):
    "`asr-finetuner --help`, `train --help` and a bad parameter answer in a fresh interpreter without torch or transformers."
    r = subprocess.run([sys.executable, "-c", PROBE, json.dumps(argv), json.dumps(HEAVY)], capture_output=True, text=True, timeout=120)
    result = json.loads(r.stderr.splitlines()[-1])
    assert result == {"code": code, "heavy": []}, r.stderr[-2000:]
    assert message in r.stdout + r.stderr


def test_language_table_is_transformers_table():
    "config's copy of Whisper's languages (kept so that validation needs no transformers) equals transformers' table."
    from transformers.models.whisper.tokenization_whisper import LANGUAGES, TO_LANGUAGE_CODE
    from asr_finetuner import config
    assert list(config.LANGUAGES.items()) == list(LANGUAGES.items())
    assert list(config.TO_LANGUAGE_CODE.items()) == list(TO_LANGUAGE_CODE.items())
