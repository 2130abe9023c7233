"""The evaluate and transcribe jobs: scoring an artifact and a dataset (and their agreement), counted skips,
long audio through transformers' long-form decoding with the real 30 s window, JSON/SRT/VTT output that
standard parsers read, batching, bad files, and the CLI."""
import csv, io, json, subprocess, sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import srt
import webvtt

from asr_finetuner import decoding as dec
from asr_finetuner.evaluate import evaluate
from asr_finetuner.eval_data import SKIP_REASONS
from asr_finetuner.scoring import EvalMetrics
from asr_finetuner.transcribe import format_transcripts, transcribe
from asr_finetuner.audio import load_audio
from asr_finetuner.cli import main
from asr_finetuner.config import EvaluateConfig, InputError, TranscribeConfig, make_config
from asr_finetuner.preprocess import preprocess
from asr_finetuner.text import asr_metrics

BIN = Path(sys.executable).parent / "asr-finetuner"
FAST = dict(generation_max_length=5)  # a random model never stops early: few tokens keep each test short
GREEDY = dict(generation_max_length=8, temperature=0)  # no temperature fallback: deterministic, and 6 times less decoding



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
    m = evaluate(model_id=str(tiny_model_dir), artifact_name="it-eval", artifacts_dir=str(artifacts), output_dir=str(out),
                    eval_batch_size=4, **FAST)
    return m, out


@pytest.fixture(scope="module")
def long_wav(tmp_path_factory, sample_dir):
    "A 12 s recording: clips of the sample back to back."
    clips = [load_audio(p) for p in sorted((sample_dir / "test").glob("*.ogg"))[:6]]
    path = tmp_path_factory.mktemp("audio") / "long.wav"
    sf.write(path, np.resize(np.concatenate(clips), 12 * 16_000), 16_000)
    return path


@pytest.fixture(scope="module")
def wav70(tmp_path_factory, sample_dir):
    "70 s of speech: the sample's test clips one after the other, 0.4 s of silence after each."
    pause, parts = np.zeros(6_400, np.float32), []
    for p in sorted((sample_dir / "test").glob("*.ogg")):
        parts += [load_audio(p), pause]
    x = np.concatenate(parts)
    assert len(x) >= 70 * 16_000
    path = tmp_path_factory.mktemp("audio") / "talk.wav"
    sf.write(path, x[:70 * 16_000], 16_000)
    return path


@pytest.fixture(scope="module")
def long_run(tmp_path_factory, tiny_model_dir_30s, wav70):
    "(results, JSON written, generate inputs seen) of the job on the 70 s file: real 30 s window, default decoding."
    out, seen = tmp_path_factory.mktemp("transcribe") / "t.json", []
    real = dec.generate_segments
    def spy(model, tok, feats, mask, *a, **kw):
        seen.append((tuple(feats.shape), mask.sum(-1).tolist(), kw))
        return real(model, tok, feats, mask, *a, **kw)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(dec, "generate_segments", spy)
        res = transcribe(model_id=str(tiny_model_dir_30s), audio=str(wav70), language="it", output_format="json",
                            output_file=str(out), generation_max_length=8)
    return res, json.loads(out.read_text()), seen


def read_jsonl(path):
    return [json.loads(l) for l in Path(path).read_text(encoding="utf-8").splitlines()]


def run_cli(*args):
    return subprocess.run([str(BIN), *map(str, args)], capture_output=True, text=True, timeout=120)


def test_evaluate_on_an_artifact_writes_metrics_and_predictions(artifact_eval):
    m, out = artifact_eval
    assert EvalMetrics.read(out / "metrics.json") == m
    preds = [json.loads(l) for l in (out / "predictions.jsonl").read_text().splitlines()]
    assert m.wer == asr_metrics([p["prediction"] for p in preds], [p["reference"] for p in preds])["wer"]
    # both are rounded from the unrounded seconds: transcribe_seconds to the millisecond, the factor to 4 decimals
    assert m.real_time_factor == pytest.approx(m.transcribe_seconds / m.audio_seconds, abs=0.0005 / m.audio_seconds + 0.00005)
    assert m.num_utterances == 4 and m.num_skipped == 0 and set(m.skipped) == set(SKIP_REASONS)
    assert m.data["kind"] == "artifact" and m.data["fingerprint"] and m.real_time_factor > 0
    preds = read_jsonl(out / "predictions.jsonl")
    assert len(preds) == 4 and all(set(p) == {"source", "reference", "prediction", "wer"} for p in preds)
    assert all(Path(p["source"]).parent.name == "validation" and p["reference"] for p in preds)
    assert json.loads((out / "eval_config.json").read_text())["artifact_name"] == "it-eval"


def test_dataset_and_artifact_give_the_same_predictions(artifact_eval, tiny_model_dir, sample_dir, tmp_path):
    "Same seed and cap: the clips the artifact holds, decoded from audio instead of stored frames, decode the same."
    m_art, out_art = artifact_eval
    m = evaluate(model_id=str(tiny_model_dir), dataset_name=str(sample_dir), max_eval_samples=4, output_dir=str(tmp_path),
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
    m = evaluate(model_id=str(tiny_model_dir), dataset_name=str(tmp_path / "manifest.csv"), output_dir=str(tmp_path / "out"), **FAST)
    assert m.num_utterances == 2
    assert m.skipped == {"missing file": 1, "undecodable audio": 1, "empty audio": 1, "empty text": 1, "too long": 1}
    assert [p["reference"] for p in read_jsonl(tmp_path / "out" / "predictions.jsonl")] == ["due", "tre"]


def test_evaluate_refuses_unclear_or_misfit_data(tiny_model_dir, artifacts):
    with pytest.raises(InputError, match="exactly one of artifact_name"):
        make_config(EvaluateConfig, model_id="m", artifact_name="a", dataset_name="d")
    with pytest.raises(InputError, match="made for language Italian, not French: set language=Italian"):
        evaluate(model_id=str(tiny_model_dir), artifact_name="it-eval", artifacts_dir=str(artifacts), language="fr")


def test_long_file_is_decoded_whole_by_the_long_form_algorithm(long_run, wav70):
    "70 s in one generate call (7000 frames, no cutting by hand) with the documented defaults; segments inside the file, in order."
    res, written, seen = long_run
    assert len(seen) == 1 and seen[0][:2] == ((1, 80, 7000), [7000])
    kw = seen[0][2]
    assert (kw["temperature"], kw["compression_ratio_threshold"], kw["logprob_threshold"], kw["no_speech_threshold"],
            kw["condition_on_prev_tokens"], kw["max_new_tokens"]) == ((0.0, 0.2, 0.4, 0.6, 0.8, 1.0), 1.35, -1.0, 0.6, False, 8)
    assert written == res and [(r["path"], r["duration"]) for r in res] == [(str(wav70), 70.0)]
    assert set(res[0]) == {"path", "text", "duration", "segments"}
    segments = res[0]["segments"]
    assert segments and all(set(s) == {"start", "end", "text"} and s["text"] for s in segments)
    assert all(0 <= s["start"] <= s["end"] <= 70.0 for s in segments)
    assert [s["start"] for s in segments] == sorted(s["start"] for s in segments)
    assert all(a["end"] <= b["start"] for a, b in zip(segments, segments[1:]))
    assert all(s["text"] in res[0]["text"] for s in segments)


def test_subtitles_parse_with_standard_parsers(long_run):
    "SRT through `srt`, WebVTT through `webvtt-py`: every segment a cue, with its times to the millisecond and its text."
    res = long_run[0]
    segments = res[0]["segments"]
    cues = list(srt.parse(format_transcripts(res, "srt")))
    assert [(c.index, c.start.total_seconds(), c.end.total_seconds(), c.content) for c in cues] == \
           [(i, s["start"], s["end"], s["text"]) for i, s in enumerate(segments, 1)]
    captions = webvtt.from_buffer(io.StringIO(format_transcripts(res, "vtt"))).captions
    assert [(c.start_time.in_milliseconds() / 1000, c.end_time.in_milliseconds() / 1000, c.text) for c in captions] == \
           [(s["start"], s["end"], s["text"]) for s in segments]


def test_a_model_that_writes_no_timestamps_gets_one_segment_per_window(tiny_model_dir_30s, wav70):
    "Every timestamp but the forced first <|0.00|> suppressed, as for a model fine-tuned on <|notimestamps|> labels only."
    model, processor = dec.load_for_inference(str(tiny_model_dir_30s))
    options = dec.long_form_options(make_config(TranscribeConfig, model_id="m", audio="a.wav", **GREEDY).decoding(), model)
    no_timestamps = list(range(processor.tokenizer.convert_tokens_to_ids("<|0.02|>"), model.config.vocab_size))
    x = load_audio(wav70)
    feats, mask = dec.batch_features([dec.file_features(processor.feature_extractor, x)])
    (segments,) = dec.generate_segments(model, processor.tokenizer, feats, mask, "it", "transcribe", suppress_tokens=no_timestamps, **options)
    res = dec.file_transcript(segments, len(x) / 16_000)
    assert [(s["start"], s["end"]) for s in res["segments"]] == [(0.0, 30.0), (30.0, 60.0), (60.0, 70.0)]


def test_files_batched_decode_as_one_at_a_time(capsys, tmp_path, tiny_model_dir_30s, wav70, sample_dir):
    "A 70 s file, a 2 s clip (shorter than the window) and a 40 s file: batched, or one by one, the same transcripts."
    x = load_audio(wav70)
    sf.write(tmp_path / "mid.wav", x[10 * 16_000:50 * 16_000], 16_000)
    files = [str(wav70), str(sorted((sample_dir / "test").glob("*.ogg"))[2]), str(tmp_path / "mid.wav")]
    common = dict(model_id=str(tiny_model_dir_30s), audio=files, language="it", **GREEDY)
    together = transcribe(batch_size=3, output_format="json", output_file=str(tmp_path / "t.json"), **common)
    capsys.readouterr()
    alone = transcribe(batch_size=1, **common)
    assert alone == together and [r["duration"] for r in alone] == [70.0, 2.81, 40.0]
    assert capsys.readouterr().out == "".join(f"{r['path']}\t{r['text']}\n" for r in alone)
    assert all(s["end"] <= r["duration"] for r in alone for s in r["segments"])


def test_undecodable_file_among_several_is_reported_after_the_others_are_written(tmp_path, tiny_model_dir, sample_dir):
    clip, bad = next((sample_dir / "test").glob("*.ogg")), tmp_path / "bad.wav"
    bad.write_bytes(b"not audio")
    with pytest.raises(InputError, match=r"Could not decode 1 of 2 audio file\(s\): .*bad.wav.*The other 1 were transcribed"):
        transcribe(model_id=str(tiny_model_dir), audio=[str(bad), str(clip)], output_file=str(tmp_path / "out.txt"), **FAST)
    lines = (tmp_path / "out.txt").read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{clip}\t")


def test_missing_file_exits_2_without_traceback(capsys, tiny_model_dir):
    with pytest.raises(SystemExit) as e:
        main(["transcribe", "--model_id", str(tiny_model_dir), "--audio", "nowhere/a.wav,b.wav"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err
    assert "Audio file(s) not found: nowhere/a.wav,b.wav" in err and "not commas" in err


def test_several_inputs_as_subtitles_need_an_output_dir(capsys):
    "Checked before anything is loaded: the model id need not exist."
    with pytest.raises(SystemExit) as e:
        main(["transcribe", "--model_id", "no/such-model", "--audio", "a.wav", "b.wav", "--output_format", "vtt"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "2 audio files in vtt: a subtitle file holds one recording. Give output_dir" in err


def test_help_lists_the_commands_and_their_flags(capsys):
    for argv, wanted in ((["--help"], ["evaluate", "transcribe"]),
                         (["evaluate", "--help"], ["--artifact_name", "--dataset_name", "--eval_batch_size", "(default: 8)"]),
                         (["transcribe", "--help"], ["--audio AUDIO [AUDIO ...]", "--output_format", "--output_dir",
                                                     "--temperature TEMPERATURE [TEMPERATURE ...]", "(default: (0.0, 0.2, 0.4, 0.6, 0.8, 1.0))",
                                                     "--condition_on_prev_tokens", "--compression_ratio_threshold", "(default: 1.35)",
                                                     "--logprob_threshold", "(default: -1.0)", "--no_speech_threshold", "the model's own", "else 0.6", "--vad",
                                                     "temperature fallback", "zlib", "no-speech probability", "srt or vtt"])):
        with pytest.raises(SystemExit) as e: main(argv)
        out = " ".join(capsys.readouterr().out.split())  # argparse wraps help lines
        assert e.value.code == 0 and all(w in out for w in wanted), (argv, out)


def test_cli_transcribe_writes_json(capsys, tmp_path, tiny_model_dir, long_wav, sample_dir):
    clip = next((sample_dir / "test").glob("*.ogg"))
    main(["transcribe", "--model_id", str(tiny_model_dir), "--audio", str(long_wav), "--audio", str(clip), "--output_format", "json",
          "--output_file", str(tmp_path / "t.json"), "--language", "it", "--generation_max_length", "5"])
    out, err = capsys.readouterr()
    assert out == "" and "Wrote 2 transcript(s)" in err
    res = json.loads((tmp_path / "t.json").read_text())
    assert [(x["path"], x["duration"]) for x in res] == [(str(long_wav), 12.0), (str(clip), round(sf.info(clip).duration, 3))]
    assert all(set(x) == {"path", "text", "duration", "segments"} for x in res)


def test_cli_transcribe_writes_one_subtitle_file_per_input(tmp_path, tiny_model_dir, long_wav, sample_dir):
    "The installed command, --output_format srt --output_dir: <input name>.srt each, read back by `srt`."
    clip = next((sample_dir / "test").glob("*.ogg"))
    r = run_cli("transcribe", "--model_id", tiny_model_dir, "--audio", long_wav, clip, "--output_format", "srt",
                "--output_dir", tmp_path / "subs", "--language", "it", "--generation_max_length", "5", "--temperature", "0")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "" and f"Wrote 2 srt file(s) to {tmp_path / 'subs'}" in r.stderr
    assert sorted(p.name for p in (tmp_path / "subs").iterdir()) == sorted(["long.srt", f"{clip.stem}.srt"])
    for name, duration in (("long.srt", 12.0), (f"{clip.stem}.srt", sf.info(clip).duration)):
        cues = list(srt.parse((tmp_path / "subs" / name).read_text(encoding="utf-8")))
        assert all(0 <= c.start <= c.end and c.end.total_seconds() <= duration + 1e-3 for c in cues), name


def test_cli_evaluate(tmp_path, tiny_model_dir, artifacts):
    r = run_cli("evaluate", "--model_id", tiny_model_dir, "--artifact_name", "it-eval", "--artifacts_dir", artifacts,
                "--output_dir", tmp_path, "--generation_max_length", "5")
    assert r.returncode == 0, r.stderr
    assert "Evaluated" in r.stdout and "WER" in r.stdout
    assert json.loads((tmp_path / "metrics.json").read_text())["num_utterances"] == 4
