"""The preprocess job end to end: every source kind, every drop reason, translate, streaming, fingerprints,
the feature contract on the real 30 s window, the interrupted-run rule, and the CLI."""
import csv, json, os, signal, subprocess, sys, time
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from transformers import WhisperFeatureExtractor

from asr_finetuner.audio import load_audio, pad_to_window
from asr_finetuner.artifacts import load_artifact
from asr_finetuner.config import InputError
from asr_finetuner.preprocess import DROP_REASONS, preprocess

BIN = Path(sys.executable).parent / "asr-finetuner"



def sample_rows(sample_dir, split, n):
    with open(sample_dir / split / "metadata.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))[:n]
    return [(sample_dir / split / r["file_name"], r["transcription"]) for r in rows]


@pytest.fixture(scope="module")
def hub_repo(tmp_path_factory, sample_dir):
    "A folder laid out like a Hub dataset repository: config `it`, train 16 and test 6 rows of real clips as bytes."
    repo = tmp_path_factory.mktemp("hub")
    (repo / "it").mkdir()
    readme = ["---", "configs:", "- config_name: it", "  data_files:"]
    for split, src, n in (("train", "train", 16), ("test", "test", 6)):
        rows = sample_rows(sample_dir, src, n)
        table = pa.table({"audio": [{"bytes": p.read_bytes(), "path": p.name} for p, _ in rows],
                          "sentence": [t for _, t in rows]})
        pq.write_table(table, repo / "it" / f"{split}-00000-of-00001.parquet")
        readme += [f"  - split: {split}", f"    path: it/{split}-*"]
    (repo / "README.md").write_text("\n".join(readme + ["---"]) + "\n")
    return repo


def run(tmp_path, model_dir, dataset_name, **kw):
    kw.setdefault("num_proc", 1)
    return preprocess(artifact_name=kw.pop("artifact_name", "art"), model_id=str(model_dir), dataset_name=str(dataset_name),
                      artifacts_dir=str(tmp_path / "artifacts"), **kw)


def test_hub_like_source_to_artifact_that_load_from_disk_opens(tmp_path, tiny_model_dir, hub_repo):
    m = run(tmp_path, tiny_model_dir, hub_repo, language_code="it")
    dd = datasets.load_from_disk(m.path)
    assert isinstance(dd, datasets.DatasetDict) and sorted(dd) == ["eval", "train"]
    assert (len(dd["train"]), len(dd["eval"])) == (16, 6)
    assert set(dd["train"].column_names) == {"log_mel_frames", "labels", "text", "duration", "source", "speaker", "prompt_ids"}
    assert m.source["kind"] == "hub" and m.source["eval_split"] == "test"
    assert m.splits["train"]["audio_hours"] > 0
    saved = json.loads((Path(m.path) / "manifest.json").read_text())
    for key in ("parameters", "feature_extractor", "tokenizer", "versions", "fingerprint", "label_prefix", "data_files"):
        assert saved[key] == getattr(m, key) and saved[key], key
    assert (Path(m.path) / "processor" / "tokenizer.json").is_file()
    dd2, manifest = load_artifact("art", tmp_path / "artifacts", verify=True)
    assert manifest.fingerprint == m.fingerprint


def write_wav(path, x, rate=16_000):
    sf.write(str(path), np.asarray(x, np.float32), rate)
    return path.name


def test_manifest_source_counts_every_drop_reason(tmp_path, tiny_model_dir, sample_dir):
    "Each bad row is dropped under its reason, counted, and the good rows are kept."
    d = tmp_path / "data"; d.mkdir()
    rng = np.random.default_rng(0)
    speech = load_audio(str(sample_rows(sample_dir, "train", 1)[0][0]))
    good = sample_rows(sample_dir, "train", 6)
    rows = [(str(p), t, "train") for p, t in good[:4]] + [(str(p), t, "test") for p, t in good[4:]]
    (d / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + rng.bytes(200))
    bad = {
        "missing file": ("nowhere.wav", "Una frase."),
        "undecodable audio": ("corrupt.wav", "Una frase."),
        "empty text": (write_wav(d / "e.wav", speech), "   "),
        "silent audio": (write_wav(d / "s.wav", np.zeros(32_000)), "Silenzio."),
        "too short": (write_wav(d / "short.wav", speech[:3_200]), "Corto."),
        "too long": (write_wav(d / "long.wav", np.tile(speech, 4)[:16_000 * 6]), "Troppo lungo."),
        "label too long": (write_wav(d / "l.wav", speech), "parola " * 300),
    }
    rows += [(p, t, "train") for p, t in bad.values()]
    with open(d / "manifest.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f); w.writerow(["path", "text", "split"]); w.writerows(rows)
    m = run(tmp_path, tiny_model_dir, d / "manifest.csv")
    train = m.splits["train"]
    assert train["dropped"] == {r: 1 for r in DROP_REASONS}
    assert (train["rows_in"], train["rows_kept"], m.splits["eval"]["rows_kept"]) == (11, 4, 2)
    assert m.source["kind"] == "manifest"


def test_every_row_dropped_fails_with_counts_and_writes_nothing(tmp_path, tiny_model_dir):
    d = tmp_path / "data"; d.mkdir()
    write_wav(d / "s.wav", np.zeros(16_000))
    (d / "m.csv").write_text("path,text,split\ns.wav,Silenzio.,train\ns.wav,Silenzio.,test\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"Every row of the train split was dropped \(1 rows; silent audio: 1\)"):
        run(tmp_path, tiny_model_dir, d / "m.csv")
    assert not list((tmp_path / "artifacts").iterdir()) or all(p.name.endswith(".lock") for p in (tmp_path / "artifacts").iterdir())


def test_translate_labels_and_saved_dataset_source(tmp_path, tiny_model_dir, sample_dir):
    rows = sample_rows(sample_dir, "train", 8)
    dd = datasets.DatasetDict({s: datasets.Dataset.from_dict({"path": [str(p) for p, _ in part], "translation": [f"English {i}" for i in range(len(part))]})
                               for s, part in (("train", rows[:6]), ("validation", rows[6:]))})
    dd.save_to_disk(str(tmp_path / "saved"))
    m = run(tmp_path, tiny_model_dir, tmp_path / "saved", task="translate", text_column="translation", language="Italian")
    art = datasets.load_from_disk(m.path)
    assert art["train"][0]["labels"][:4] == [50258, 50274, 50358, 50363]
    assert art["train"][0]["text"] == "English 0" and m.source["kind"] == "saved"


def test_streaming_gives_the_same_content_and_fingerprint(tmp_path, tiny_model_dir, hub_repo):
    a = run(tmp_path, tiny_model_dir, hub_repo, artifact_name="a")
    b = run(tmp_path, tiny_model_dir, hub_repo, artifact_name="b", streaming=True)
    assert b.parameters["streaming"] is True
    assert a.fingerprint == b.fingerprint
    assert a.splits == b.splits


def test_fingerprint_is_stable_across_runs_and_processes(tmp_path, tiny_model_dir, sample_dir, monkeypatch):
    from asr_finetuner import preprocess as pre
    monkeypatch.setattr(pre, "MIN_ROWS_PER_PROCESS", 16)  # so that 80 rows do run in 2 processes
    one = run(tmp_path, tiny_model_dir, sample_dir, max_train_samples=80, max_eval_samples=8, num_proc=1)
    two = run(tmp_path, tiny_model_dir, sample_dir, max_train_samples=80, max_eval_samples=8, num_proc=2, if_exists="overwrite")
    assert one.fingerprint == two.fingerprint and two.splits["train"]["rows_kept"] == 80
    other = run(tmp_path, tiny_model_dir, sample_dir, max_train_samples=80, max_eval_samples=8, seed=7, if_exists="overwrite")
    assert other.fingerprint != one.fingerprint


def test_existing_artifact_error_reuse_overwrite(tmp_path, tiny_model_dir, hub_repo):
    m = run(tmp_path, tiny_model_dir, hub_repo, max_train_samples=4, max_eval_samples=2)
    with pytest.raises(InputError, match="already exists"):
        run(tmp_path, tiny_model_dir, hub_repo, max_train_samples=4, max_eval_samples=2)
    assert run(tmp_path, tiny_model_dir, hub_repo, if_exists="reuse").fingerprint == m.fingerprint


def test_features_equal_the_feature_extractor_on_the_real_30s_window(tmp_path, tiny_model_dir_30s, tiny_model_dir_128, sample_dir):
    for model_dir, n_mels in ((tiny_model_dir_30s, 80), (tiny_model_dir_128, 128)):
        m = run(tmp_path, model_dir, sample_dir, max_train_samples=5, max_eval_samples=2, artifact_name=f"f{n_mels}")
        fe = WhisperFeatureExtractor.from_pretrained(model_dir)
        ds = datasets.load_from_disk(m.path)["train"].with_format("numpy")
        for row in ds:
            ref = fe(load_audio(row["source"]), sampling_rate=16_000, return_tensors="np").input_features[0]
            ours = pad_to_window(row["log_mel_frames"], fe.nb_max_frames)
            assert ours.shape == ref.shape == (n_mels, fe.nb_max_frames)
            np.testing.assert_allclose(ours, ref, atol=4e-3)  # float16 rounding of values within [-1.5, 2]


def test_cli_runs_and_a_killed_run_leaves_no_artifact(tmp_path, tiny_model_dir, sample_dir):
    "kill -9 in the middle: nothing under the artifact's name; the next run cleans up and succeeds."
    arts = tmp_path / "artifacts"
    cmd = [str(BIN), "preprocess", "--artifact_name", "killed", "--model_id", str(tiny_model_dir),
           "--dataset_name", str(sample_dir), "--artifacts_dir", str(arts), "--num_proc", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list(arts.glob(".killed.staging-*/_work/*.arrow")): time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL); proc.wait()
    assert not (arts / "killed").exists() and list(arts.glob(".killed.staging-*"))
    with pytest.raises(InputError, match="run the preprocess job"):
        load_artifact("killed", arts)
    r = subprocess.run(cmd + ["--max_train_samples", "10", "--max_eval_samples", "4"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "kept 10/10 rows" in r.stdout and not list(arts.glob(".killed.staging-*"))
    dd, manifest = load_artifact("killed", arts, verify=True)
    assert len(dd["train"]) == 10


WORKERS_RUN = """
import sys
import asr_finetuner.preprocess as p
p.MIN_ROWS_PER_PROCESS = 8  # the documented override: start workers for a small split
p.preprocess(artifact_name="orphans", model_id=sys.argv[1], dataset_name=sys.argv[2], artifacts_dir=sys.argv[3], num_proc=2)
"""


def test_map_workers_die_with_a_killed_job(tmp_path, tiny_model_dir_30s, sample_dir):
    "kill -9 of the job alone (not its process group): its map workers and their manager must not outlive it by more than seconds."
    import psutil
    proc = subprocess.Popen([sys.executable, "-c", WORKERS_RUN, str(tiny_model_dir_30s), str(sample_dir), str(tmp_path / "arts")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    job, deadline, workers = psutil.Process(proc.pid), time.time() + 120, []
    while time.time() < deadline and proc.poll() is None and len(workers) < 2:  # two workers (and a resource tracker)
        workers = job.children(); time.sleep(0.05)
    assert len(workers) >= 2, f"the job ended or started no workers: {proc.poll()}"
    time.sleep(1.0); workers = job.children()  # the workers are in their first batches
    os.kill(proc.pid, signal.SIGKILL); proc.wait()
    gone, alive = psutil.wait_procs(workers, timeout=5)
    alive = [w for w in alive if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]
    for w in alive: w.kill()
    assert not alive, f"{len(alive)} of the job's {len(workers)} child processes outlived it"


def test_cli_error_for_a_model_that_does_not_exist(tmp_path, sample_dir):
    r = subprocess.run([str(BIN), "preprocess", "--artifact_name", "x", "--model_id", str(tmp_path / "nope"),
                        "--dataset_name", str(sample_dir), "--artifacts_dir", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr


def test_wandb_logs_the_artifact_offline(tmp_path, tiny_model_dir, hub_repo, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    import wandb; wandb.teardown()  # W&B keeps its settings (its folder) per process: start afresh in this test's folder
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    m = run(tmp_path, tiny_model_dir, hub_repo, artifact_name="it-wandb", max_train_samples=4, max_eval_samples=2, wandb=True)
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    logged = b"".join(p.read_bytes() for p in runs[0].rglob("*.wandb"))
    alias = f"fp-{m.fingerprint[:16]}".encode()  # the version training asks for
    assert b"it-wandb" in logged and b"manifest.json" in logged and alias in logged


def test_preprocess_leaves_the_callers_torch_threads_alone(tmp_path, tiny_model_dir, sample_dir):
    "A split too small for workers runs in-process: it must not leave the caller (training next, say) on one thread."
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        run(tmp_path, tiny_model_dir, sample_dir, max_train_samples=4, max_eval_samples=2, num_proc=2)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
