"""The evaluate and transcribe jobs: scoring an artifact and a dataset (and their agreement), counted skips,
long audio in chunks of the model's window, JSON output, bad files, and the CLI."""
import csv, json, subprocess, sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import soundfile as sf

from asr_finetuner import evaluate as ev
from asr_finetuner.audio import load_audio
from asr_finetuner.cli import main
from asr_finetuner.config import EvaluateConfig, InputError, make_config
from asr_finetuner.preprocess import preprocess
from asr_finetuner.text import asr_metrics

BIN = Path(sys.executable).parent / "asr-finetuner"
FAST = dict(generation_max_length=5)  # a random model never stops early: few tokens keep each test short



@pytest.fixture(scope="module")
def artifacts(tmp_path_factory, tiny_model_dir, sample_dir):
    "A folder holding the artifact `it-eval`: 4 train and 4 eval clips of the sample (eval: validation split)."
    d = tmp_path_factory.mktemp("artifacts")
    preprocess(artifact_name="it-eval", model_id=str(tiny_model_dir), dataset_name=str(sample_dir), max_train_samples=4,
               max_eval_samples=4, artifacts_dir=d, num_proc=1)
    return d


@pytest.fixture(scope="module")
def artifact_eval(tmp_path_factory, tiny_model_dir, artifacts):
    "(metrics, output folder) of the evaluate job on the artifact."
    out = tmp_path_factory.mktemp("eval") / "artifact"
    m = ev.evaluate(model_id=str(tiny_model_dir), artifact_name="it-eval", artifacts_dir=str(artifacts), output_dir=str(out),
                    eval_batch_size=4, **FAST)
    return m, out


@pytest.fixture(scope="module")
def long_wav(tmp_path_factory, sample_dir):
    "A 12 s recording: clips of the sample back to back."
    clips = [load_audio(p) for p in sorted((sample_dir / "test").glob("*.ogg"))[:6]]
    path = tmp_path_factory.mktemp("audio") / "long.wav"
    sf.write(path, np.resize(np.concatenate(clips), 12 * 16_000), 16_000)
    return path


def read_jsonl(path):
    return [json.loads(l) for l in Path(path).read_text(encoding="utf-8").splitlines()]


def run_cli(*args):
    return subprocess.run([str(BIN), *map(str, args)], capture_output=True, text=True, timeout=120)


def test_evaluate_on_an_artifact_writes_metrics_and_predictions(artifact_eval):
    m, out = artifact_eval
    assert ev.EvalMetrics.read(out / "metrics.json") == m
    preds = [json.loads(l) for l in (out / "predictions.jsonl").read_text().splitlines()]
    assert m.wer == asr_metrics([p["prediction"] for p in preds], [p["reference"] for p in preds])["wer"]
    assert m.real_time_factor == round(m.transcribe_seconds / m.audio_seconds, 4)
    assert m.num_utterances == 4 and m.num_skipped == 0 and set(m.skipped) == set(ev.SKIP_REASONS)
    assert m.data["kind"] == "artifact" and m.data["fingerprint"] and m.real_time_factor > 0
    preds = read_jsonl(out / "predictions.jsonl")
    assert len(preds) == 4 and all(set(p) == {"source", "reference", "prediction", "wer"} for p in preds)
    assert all(Path(p["source"]).parent.name == "validation" and p["reference"] for p in preds)
    assert json.loads((out / "eval_config.json").read_text())["artifact_name"] == "it-eval"


def test_dataset_and_artifact_give_the_same_predictions(artifact_eval, tiny_model_dir, sample_dir, tmp_path):
    "Same seed and cap: the clips the artifact holds, decoded from audio instead of stored frames, decode the same."
    m_art, out_art = artifact_eval
    m = ev.evaluate(model_id=str(tiny_model_dir), dataset_name=str(sample_dir), max_eval_samples=4, output_dir=str(tmp_path),
                    eval_batch_size=4, **FAST)
    assert m.data["kind"] == "audiofolder" and m.data["eval_split"] == "validation" and m.num_utterances == 4
    strip = lambda rows: [(r["source"], r["reference"], r["prediction"]) for r in rows]
    assert strip(read_jsonl(tmp_path / "predictions.jsonl")) == strip(read_jsonl(out_art / "predictions.jsonl"))
    assert (m.wer, m.cer_normalized) == (m_art.wer, m_art.cer_normalized)


def test_dataset_rows_that_cannot_be_scored_are_skipped_and_counted(tmp_path, tiny_model_dir, sample_dir):
    good = sorted((sample_dir / "test").glob("*.ogg"))[:3]
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    sf.write(tmp_path / "empty.wav", np.zeros(0, np.float32), 16_000)
    sf.write(tmp_path / "long.wav", np.full(6 * 16_000, 0.1, np.float32), 16_000)  # the tiny model's window is 5 s
    rows = [(good[0], "uno", "train"), (good[1], "due", "test"), (good[2], "tre", "test"), ("missing.wav", "x", "test"),
            ("bad.wav", "x", "test"), ("empty.wav", "x", "test"), ("long.wav", "x", "test"), (good[1], " ", "test")]
    with open(tmp_path / "manifest.csv", "w", newline="") as f:
        w = csv.writer(f); w.writerow(["path", "text", "split"]); w.writerows(rows)
    m = ev.evaluate(model_id=str(tiny_model_dir), dataset_name=str(tmp_path / "manifest.csv"), output_dir=str(tmp_path / "out"), **FAST)
    assert m.num_utterances == 2
    assert m.skipped == {"missing file": 1, "undecodable audio": 1, "empty audio": 1, "empty text": 1, "too long": 1}
    assert [p["reference"] for p in read_jsonl(tmp_path / "out" / "predictions.jsonl")] == ["due", "tre"]


def test_evaluate_refuses_unclear_or_misfit_data(tiny_model_dir, artifacts):
    with pytest.raises(InputError, match="exactly one of artifact_name"):
        make_config(EvaluateConfig, model_id="m", artifact_name="a", dataset_name="d")
    with pytest.raises(InputError, match="made for language Italian, not French: set language=Italian"):
        ev.evaluate(model_id=str(tiny_model_dir), artifact_name="it-eval", artifacts_dir=str(artifacts), language="fr")


def test_long_file_is_transcribed_in_chunks_of_the_window(monkeypatch, capsys, tiny_model_dir, long_wav):
    "12 s with a 5 s window and the default chunk_seconds=30: one generate call on 3 chunks padded to 500 frames."
    shapes, real = [], ev.generate_texts
    monkeypatch.setattr(ev, "generate_texts", lambda model, tok, feats, *a: shapes.append(feats.shape) or real(model, tok, feats, *a))
    res = ev.transcribe(model_id=str(tiny_model_dir), audio=str(long_wav), language="it", **FAST)
    assert shapes == [(3, 80, 500)]
    assert [(r["path"], r["duration"], r["chunks"]) for r in res] == [(str(long_wav), 12.0, 3)]
    out = capsys.readouterr().out
    assert out == f"{long_wav}\t{res[0]['text']}\n" and res[0]["text"]


def test_undecodable_file_among_several_is_reported_after_the_others_are_written(tmp_path, tiny_model_dir, sample_dir):
    clip, bad = next((sample_dir / "test").glob("*.ogg")), tmp_path / "bad.wav"
    bad.write_bytes(b"not audio")
    with pytest.raises(InputError, match=r"Could not decode 1 of 2 audio file\(s\): .*bad.wav.*The other 1 were transcribed"):
        ev.transcribe(model_id=str(tiny_model_dir), audio=[str(bad), str(clip)], output_file=str(tmp_path / "out.txt"), **FAST)
    lines = (tmp_path / "out.txt").read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{clip}\t")


def test_missing_file_exits_2_without_traceback(capsys, tiny_model_dir):
    with pytest.raises(SystemExit) as e:
        main(["transcribe", "--model_id", str(tiny_model_dir), "--audio", "nowhere/a.wav,b.wav"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err
    assert "Audio file(s) not found: nowhere/a.wav,b.wav" in err and "not commas" in err


def test_help_lists_the_commands_and_their_flags(capsys):
    for argv, wanted in ((["--help"], ["evaluate", "transcribe"]),
                         (["evaluate", "--help"], ["--artifact_name", "--dataset_name", "--eval_batch_size", "(default: 8)"]),
                         (["transcribe", "--help"], ["--audio AUDIO [AUDIO ...]", "--output_format", "--chunk_seconds"])):
        with pytest.raises(SystemExit) as e: main(argv)
        out = capsys.readouterr().out
        assert e.value.code == 0 and all(w in out for w in wanted), (argv, out)


def test_cli_transcribe_writes_json(tmp_path, tiny_model_dir, long_wav, sample_dir):
    clip = next((sample_dir / "test").glob("*.ogg"))
    r = run_cli("transcribe", "--model_id", tiny_model_dir, "--audio", long_wav, "--audio", clip, "--output_format", "json",
                "--output_file", tmp_path / "t.json", "--language", "it", "--generation_max_length", "5")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "" and "Wrote 2 transcript(s)" in r.stderr
    res = json.loads((tmp_path / "t.json").read_text())
    assert [(x["path"], x["chunks"]) for x in res] == [(str(long_wav), 3), (str(clip), 1)]
    assert all(set(x) == {"path", "text", "duration", "chunks"} for x in res)


def test_cli_evaluate(tmp_path, tiny_model_dir, artifacts):
    r = run_cli("evaluate", "--model_id", tiny_model_dir, "--artifact_name", "it-eval", "--artifacts_dir", artifacts,
                "--output_dir", tmp_path, "--generation_max_length", "5")
    assert r.returncode == 0, r.stderr
    assert "Evaluated" in r.stdout and "WER" in r.stdout
    assert json.loads((tmp_path / "metrics.json").read_text())["num_utterances"] == 4
