"""Robustness and security: bad input of every kind ends in a clear error or a counted skip; kills, races and
secrets. Most cases run in-process; the CLI's error policy is checked through subprocesses for a few."""
import contextlib, csv, io, json, os, shutil, subprocess, sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import soundfile as sf

from asr_finetuner.artifacts import load_artifact
from asr_finetuner.config import InputError
from asr_finetuner.preprocess import preprocess
from asr_finetuner.train import train

BIN = Path(sys.executable).parent
HF_SECRET, WANDB_SECRET = "hf_SeCrEtToKeN4242424242", "0123456789abcdef0123456789abcdefSECRET40"



@pytest.fixture(scope="module")
def speech(sample_dir):
    from asr_finetuner.audio import load_audio
    with open(sample_dir / "train" / "metadata.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))[:6]
    return [(sample_dir / "train" / r["file_name"], r["transcription"]) for r in rows], load_audio(str(sample_dir / "train" / rows[0]["file_name"]))


def manifest(folder, rows, name="m.csv"):
    with open(folder / name, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f); w.writerow(["path", "text", "split"]); w.writerows(rows)
    return folder / name


def run_pre(tmp_path, model_dir, dataset, **kw):
    kw.setdefault("num_proc", 1)
    return preprocess(artifact_name=kw.pop("artifact_name", "r"), model_id=str(model_dir), dataset_name=str(dataset),
                      artifacts_dir=str(tmp_path / "arts"), **kw)


# --- bad audio and text: counted, reported skips -------------------------------------------------------------

def test_bad_audio_and_text_are_counted_skips(tmp_path, tiny_model_dir, speech):
    "corrupt, truncated, empty, silent, 10-minute, unsupported-format audio; empty, whitespace, long, odd text."
    clips, x = speech
    d = tmp_path / "d"; d.mkdir()
    buf = io.BytesIO(); sf.write(buf, x, 16_000, format="FLAC"); flac = buf.getvalue()
    (d / "truncated.flac").write_bytes(flac[: len(flac) // 3])
    (d / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt " + os.urandom(64))
    (d / "empty.wav").write_bytes(b"")
    sf.write(str(d / "zero_samples.wav"), np.zeros(0, np.float32), 16_000)
    sf.write(str(d / "silent.wav"), np.zeros(32_000, np.float32), 16_000)
    sf.write(str(d / "ten_minutes.wav"), np.tile(x, 400)[: 16_000 * 600], 16_000)
    (d / "video.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(200))
    (d / "notes.txt").write_text("not audio")
    sf.write(str(d / "stereo_44k.wav"), np.stack([np.interp(np.arange(0, len(x), 16_000 / 44_100), np.arange(len(x)), x)] * 2, 1), 44_100)
    good = [(str(p), t, "train") for p, t in clips[:3]] + [(str(p), t, "test") for p, t in clips[3:]]
    bad = [("truncated.flac", "Tagliato."), ("corrupt.wav", "Rotto."), ("empty.wav", "Vuoto."), ("zero_samples.wav", "Niente."),
           ("silent.wav", "Silenzio."), ("ten_minutes.wav", "Lunghissimo."), ("video.mp4", "Video."), ("notes.txt", "Testo."),
           ("missing.wav", "Manca."), (str(clips[0][0]), ""), (str(clips[0][0]), " \t "), (str(clips[0][0]), "parola " * 400),
           ("stereo_44k.wav", "Stereo a 44,1 kHz con emoji 🙂 e accenti: perché.")]
    m = run_pre(tmp_path, tiny_model_dir, manifest(d, good + [(p, t, "train") for p, t in bad]))
    dropped = m.splits["train"]["dropped"]
    assert dropped == {"missing file": 1, "undecodable audio": 5, "empty text": 2, "silent audio": 2, "too short": 0,
                       "too long": 1, "label too long": 1}, dropped
    assert m.splits["train"]["rows_kept"] == 4  # 3 good clips + the stereo 44.1 kHz one with emoji text
    art = datasets.load_from_disk(m.path)["train"]
    assert any("🙂" in t for t in art["text"])


def test_non_utf8_manifest_is_a_clear_error(tmp_path, tiny_model_dir):
    (tmp_path / "m.csv").write_bytes("path,text\na.wav,perch\xe9\n".encode("latin-1"))
    with pytest.raises(InputError, match="UTF-8"):
        run_pre(tmp_path, tiny_model_dir, tmp_path / "m.csv")


@pytest.mark.parametrize("kw, message", [
    ({"text_column": "sentence"}, "sentence"),
    ({"audio_column": "wav"}, "wav"),
    ({"dataset_name": "no-such-user/no-such-dataset"}, "no-such-user/no-such-dataset"),
    ({"dataset_name": "/no/such/folder"}, "does not exist"),
    ({"eval_split": "dev"}, "dev"),
    ({"language": "Elvish"}, "Unknown language"),
    ({"max_train_samples": 0}, "max_train_samples=0 must be positive"),
    ({"max_duration": "long"}, "is not a valid float"),
    ({"artifact_name": "../escape"}, "not valid"),
])
def test_bad_parameters_and_sources_are_clear_errors(tmp_path, tiny_model_dir, sample_dir, kw, message):
    args = {**dict(dataset_name=str(sample_dir), max_train_samples=2, max_eval_samples=2), **kw}
    with pytest.raises(InputError, match=message):
        run_pre(tmp_path, tiny_model_dir, args.pop("dataset_name"), **args)


def test_unknown_hub_config(tmp_path, tiny_model_dir, sample_dir):
    import pyarrow as pa, pyarrow.parquet as pq
    repo = tmp_path / "hub"; (repo / "it").mkdir(parents=True)
    p = sample_dir / "train" / sorted(os.listdir(sample_dir / "train"))[0]
    pq.write_table(pa.table({"audio": [{"bytes": p.read_bytes(), "path": p.name}], "sentence": ["Ciao."]}), repo / "it" / "train-00000-of-00001.parquet")
    (repo / "README.md").write_text("---\nconfigs:\n- config_name: it\n  data_files:\n  - split: train\n    path: it/train-*\n---\n")
    with pytest.raises(InputError, match="no config 'xx'; its configs are: it"):
        run_pre(tmp_path, tiny_model_dir, repo, language_code="xx")


def test_model_path_that_does_not_exist(tmp_path, sample_dir):
    with pytest.raises(InputError, match="does not exist"):
        run_pre(tmp_path, tmp_path / "no-model", sample_dir)


def test_artifacts_dir_that_is_a_file(tmp_path, tiny_model_dir, sample_dir):
    (tmp_path / "arts").write_text("a file")
    with pytest.raises(InputError, match="artifacts folder .* is a file"):
        run_pre(tmp_path, tiny_model_dir, sample_dir, max_train_samples=2, max_eval_samples=2)


def test_not_enough_disk_space(tmp_path, tiny_model_dir, sample_dir, monkeypatch):
    from asr_finetuner import preprocess as pre
    monkeypatch.setattr(pre.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(InputError, match=r"Preprocessing needs about .* GB .* but only 0.00 GB is free"):
        run_pre(tmp_path, tiny_model_dir, sample_dir, max_train_samples=4, max_eval_samples=2)
    assert not (tmp_path / "arts" / "r").exists()


# --- artifacts: wrong model, missing, corrupted, edited --------------------------------------------------------

@pytest.fixture(scope="module")
def small_artifact(tmp_path_factory, tiny_model_dir, sample_dir):
    arts = tmp_path_factory.mktemp("arts")
    preprocess(artifact_name="small", model_id=str(tiny_model_dir), dataset_name=str(sample_dir), max_train_samples=8,
               max_eval_samples=4, artifacts_dir=str(arts), num_proc=1)
    return arts


def train_args(tiny_model_dir, sample_dir, arts, out, **kw):
    return {**dict(model_name="r", model_id=str(tiny_model_dir), dataset_name=str(sample_dir), artifact_name="small",
                   artifacts_dir=str(arts), output_dir=str(out), max_steps=2, eval_steps=2, save_steps=2, logging_steps=1,
                   warmup_steps=0, train_batch_size=4, eval_batch_size=4, generation_max_length=4), **kw}


def test_artifact_made_for_another_tokenizer(tmp_path, tiny_model_dir, sample_dir, small_artifact):
    from asr_finetuner.whisper import build_tiny_whisper
    model, processor = build_tiny_whisper(window_seconds=5)
    processor.tokenizer.add_tokens(["<|newlang|>"], special_tokens=True)
    model.resize_token_embeddings(len(processor.tokenizer))
    model.save_pretrained(tmp_path / "other"); processor.save_pretrained(tmp_path / "other")
    with pytest.raises(InputError, match="another vocabulary"):
        train(**train_args(tmp_path / "other", sample_dir, small_artifact, tmp_path / "out", model_id=str(tmp_path / "other")))


def copy_artifact(src, dst):
    shutil.copytree(src / "small", dst / "small")
    return dst


def test_corrupted_missing_and_hand_edited_artifacts(tmp_path, tiny_model_dir, sample_dir, small_artifact):
    edited = copy_artifact(small_artifact, tmp_path / "edited")
    m = json.loads((edited / "small" / "manifest.json").read_text()); m["language"] = "German"
    (edited / "small" / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(InputError, match="edited by hand"):
        train(**train_args(tiny_model_dir, sample_dir, edited, tmp_path / "o1", language="German"))
    broken = copy_artifact(small_artifact, tmp_path / "broken")
    (broken / "small" / "manifest.json").write_text("{not json")
    with pytest.raises(InputError, match="edited by hand or damaged"):
        train(**train_args(tiny_model_dir, sample_dir, broken, tmp_path / "o2"))
    old = copy_artifact(small_artifact, tmp_path / "old")  # as asr-finetuner 0.1 wrote it: checksum inside, format 1
    m = json.loads((old / "small" / "manifest.json").read_text()); m.update(format_version=1, manifest_sha256="0" * 64)
    (old / "small" / "manifest.json").write_text(json.dumps(m)); (old / "small" / "manifest.json.sha256").unlink()
    with pytest.raises(InputError, match=r"before 0.2 \(format version 1\).*preprocess it again"):
        train(**train_args(tiny_model_dir, sample_dir, old, tmp_path / "o5"))
    gone = copy_artifact(small_artifact, tmp_path / "gone")
    next((gone / "small" / "train").glob("*.arrow")).unlink()
    with pytest.raises(InputError, match="is corrupted: its data files differ"):
        train(**train_args(tiny_model_dir, sample_dir, gone, tmp_path / "o3"))
    with pytest.raises(InputError, match="run the preprocess job"):
        train(**train_args(tiny_model_dir, sample_dir, tmp_path / "nothing-here", tmp_path / "o4"))


def test_output_folder_that_is_a_file(tmp_path, tiny_model_dir, sample_dir, small_artifact):
    (tmp_path / "out").write_text("a file")
    with pytest.raises(InputError, match="is a file"):
        train(**train_args(tiny_model_dir, sample_dir, small_artifact, tmp_path / "out"))


@contextlib.contextmanager
def read_only(folder):
    "Make `folder` read-only for this process: chmod for a normal user; root ignores modes, so the immutable flag."
    folder.mkdir(parents=True, exist_ok=True)
    root = os.geteuid() == 0
    if root: subprocess.run(["chattr", "+i", str(folder)], check=True, capture_output=True)
    else: folder.chmod(0o555)
    try:
        with pytest.raises(OSError): (folder / "probe").mkdir()  # the folder really is read-only
        yield folder
    finally:
        if root: subprocess.run(["chattr", "-i", str(folder)], check=True)
        else: folder.chmod(0o755)


def test_read_only_artifacts_and_output_folders(tmp_path, tiny_model_dir, sample_dir, small_artifact):
    with read_only(tmp_path / "ro-arts"), pytest.raises(InputError, match="Cannot write to the artifacts folder .* writable artifacts_dir"):
        preprocess(artifact_name="r", model_id=str(tiny_model_dir), dataset_name=str(sample_dir), max_train_samples=2,
                   max_eval_samples=2, artifacts_dir=str(tmp_path / "ro-arts"), num_proc=1)
    with read_only(tmp_path / "ro-out"), pytest.raises(InputError, match="Cannot write to the output folder .* writable output_dir"):
        train(**train_args(tiny_model_dir, sample_dir, small_artifact, tmp_path / "ro-out"))


# --- the CLI's error policy, through subprocesses ---------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["train", "--model_name", "m", "--model_id", "m", "--dataset_name", "d", "--artifact_name", "a", "--train_batch_size", "0"], "train_batch_size=0"),
    (["preprocess", "--artifact_name", "a", "--model_id", "builtin:whisper-tiny", "--dataset_name", "/nope/data.csv"], "does not exist"),
])
def test_cli_bad_input_exits_2_without_traceback(tmp_path, args, message):
    r = subprocess.run([str(BIN / "asr-finetuner"), *args], capture_output=True, text=True, cwd=tmp_path,
                       env={**os.environ, "ASR_FINETUNER_CACHE": str(tmp_path / "cache")})
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr


# --- concurrency -------------------------------------------------------------------------------------------------

def test_two_preprocess_runs_on_one_artifact_name_end_with_one_complete_artifact(tmp_path, tiny_model_dir, sample_dir):
    "Both write at once with if_exists=overwrite: both finish, and the artifact is one run's, whole."
    cmd = [str(BIN / "asr-finetuner"), "preprocess", "--artifact_name", "race", "--model_id", str(tiny_model_dir),
           "--artifacts_dir", str(tmp_path / "arts"), "--num_proc", "1", "--if_exists", "overwrite", "--max_eval_samples", "4"]
    procs = [subprocess.Popen(cmd + ["--dataset_name", str(sample_dir), "--max_train_samples", str(n)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for n in (12, 20)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    dd, m = load_artifact("race", tmp_path / "arts", verify=True)
    assert len(dd["train"]) == m.splits["train"]["rows_kept"] in (12, 20)
    assert [p.name for p in (tmp_path / "arts").iterdir() if p.name != ".race.lock"] == ["race"]
    # and with if_exists=error, a second run is refused without touching the first
    r = subprocess.run(cmd[:-4] + ["--dataset_name", str(sample_dir)], capture_output=True, text=True)
    assert r.returncode == 2 and "already exists" in r.stderr
    assert load_artifact("race", tmp_path / "arts", verify=True)[1].fingerprint == m.fingerprint


# --- secrets -----------------------------------------------------------------------------------------------------

SECRET_RUN = """
import sys, json
from pathlib import Path
from asr_finetuner.preprocess import preprocess
from asr_finetuner.train import train
from asr_finetuner.evaluate import evaluate
from asr_finetuner.transcribe import transcribe
from asr_finetuner.jobs import run_notebook
model, sample, tmp = sys.argv[1:4]
tmp = Path(tmp)
common = dict(model_id=model, dataset_name=sample, artifact_name="sec", artifacts_dir=str(tmp / "arts"))
small = dict(max_steps=2, eval_steps=2, save_steps=2, logging_steps=1, warmup_steps=0, train_batch_size=4, eval_batch_size=4,
             generation_max_length=4)
preprocess(**common, max_train_samples=8, max_eval_samples=4, num_proc=1, wandb=True)
train(**common, model_name="sec", output_dir=str(tmp / "model"), wandb=True, **small)
evaluate(model_id=str(tmp / "model"), artifact_name="sec", artifacts_dir=str(tmp / "arts"), output_dir=str(tmp / "eval"), generation_max_length=4)
transcribe(model_id=str(tmp / "model"), audio=[str(next((Path(sample) / "test").glob("*.ogg")))], output_format="json",
           output_file=str(tmp / "t.json"), generation_max_length=4)
run_notebook("train", **common, model_name="sec-nb", output_dir=str(tmp / "model-nb"), **small)
"""


def test_no_secret_in_anything_the_jobs_write(tmp_path, tiny_model_dir, sample_dir):
    "With HF_TOKEN and WANDB_API_KEY set, run every job (W&B offline, papermill too) and scan every file written, logs included."
    env = {**os.environ, "HF_TOKEN": HF_SECRET, "WANDB_API_KEY": WANDB_SECRET, "WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path),
           "HF_DATASETS_CACHE": str(tmp_path / "hf"), "ASR_FINETUNER_CACHE": str(tmp_path / "cache")}
    with open(tmp_path / "run.log", "w") as log:
        r = subprocess.run([sys.executable, "-c", SECRET_RUN, str(tiny_model_dir), str(sample_dir), str(tmp_path)],
                           stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path, timeout=600)
    assert r.returncode == 0, (tmp_path / "run.log").read_text()[-3000:]
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) >= 2 and (tmp_path / "model-nb" / "train_run.ipynb").is_file() and len(written) > 40
    for p in written:
        data = p.read_bytes()
        assert HF_SECRET.encode() not in data and WANDB_SECRET.encode() not in data, p
