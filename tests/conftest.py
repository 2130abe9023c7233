"""Shared pytest set-up: offline everywhere, and test fixtures built once per session."""
import atexit, os, shutil, tempfile
from pathlib import Path

# Nothing in the tests may reach the Hub or W&B's servers.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# What `load_dataset` prepares, and the default artifacts folder inside it, stay out of the user's cache
# (in-process and in the subprocesses the tests start, which inherit the variable).
os.environ["HF_DATASETS_CACHE"] = tempfile.mkdtemp(prefix="asr-finetuner-tests-hf-")
atexit.register(shutil.rmtree, os.environ["HF_DATASETS_CACHE"], ignore_errors=True)
# pytest-xdist runs one worker per core: one thread each (subprocesses included) avoids oversubscribing the cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch
    torch.set_num_threads(1)

import pytest

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "asr_finetuner" / "sample_data" / "it"
TINY_WINDOW_SECONDS = 5  # covers every bundled clip (at most 4.6 s); 6x less work than the real 30 s


@pytest.fixture(scope="session")
def sample_dir():
    "The bundled Italian sample: train/, validation/, test/ with metadata.csv each (missing: the tests fail, never skip)."
    missing = [s for s in ("train", "validation", "test") if not (SAMPLE_DIR / s / "metadata.csv").is_file()]
    assert not missing, f"bundled sample data missing in {SAMPLE_DIR}: {missing} (regenerate with scripts/make_sample_data.py)"
    return SAMPLE_DIR


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    "A tiny random multilingual Whisper (short window) saved like a Hub checkpoint, built once per session."
    from asr_finetuner.whisper import build_tiny_whisper
    out = tmp_path_factory.mktemp("models") / "tiny-whisper"
    build_tiny_whisper(out, language="it", window_seconds=TINY_WINDOW_SECONDS, seed=0)
    return out


@pytest.fixture(scope="session")
def tiny_model_dir_30s(tmp_path_factory):
    "A tiny random Whisper with the real 30 s window, for the tests where the window is the point."
    from asr_finetuner.whisper import build_tiny_whisper
    out = tmp_path_factory.mktemp("models") / "tiny-whisper-30s"
    build_tiny_whisper(out, language="it", window_seconds=30, seed=0)
    return out


@pytest.fixture(scope="session")
def tiny_model_dir_128(tmp_path_factory):
    "A tiny random Whisper with 128 mel bins (large-v3's front end)."
    from asr_finetuner.whisper import build_tiny_whisper
    out = tmp_path_factory.mktemp("models") / "tiny-whisper-128"
    build_tiny_whisper(out, language="it", window_seconds=TINY_WINDOW_SECONDS, num_mel_bins=128, seed=0)
    return out


@pytest.fixture(scope="session")
def widget_run(tmp_path_factory, tiny_model_dir, sample_dir):
    """What the Jupyter widgets show, built once for test_explore and test_browser (one xdist group, so one worker):
    a small packed artifact of the sample with timestamps, and a 4-step training on it watched by a `TrainingMonitor`.
    Read it, never write into it."""
    from asr_finetuner.explore import TrainingMonitor
    from asr_finetuner.preprocess import preprocess
    from asr_finetuner.train import train
    d = tmp_path_factory.mktemp("widgets")
    preprocess(artifact_name="it-widgets", model_id=str(tiny_model_dir), dataset_name=str(sample_dir), max_train_samples=16,
               max_eval_samples=6, artifacts_dir=str(d / "arts"), num_proc=1, pack_seconds=4.8, timestamp_probability=1.0)
    monitor = TrainingMonitor("tiny-it")
    m = train(model_name="tiny-it", model_id=str(tiny_model_dir), dataset_name=str(sample_dir), artifact_name="it-widgets",
              artifacts_dir=str(d / "arts"), output_dir=str(d / "out"), max_steps=4, eval_steps=2, save_steps=4, logging_steps=1,
              warmup_steps=0, train_batch_size=4, eval_batch_size=6, learning_rate=1e-3, generation_max_length=8, callbacks=[monitor])
    return {"dir": d, "arts": d / "arts", "artifact": "it-widgets", "out": d / "out", "metrics": m, "monitor": monitor}
