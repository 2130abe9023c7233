"""Packed windows, timestamped labels and prompts on the bundled sample: windows, labels, features, prompts, manifest, training; a model trained on them segmenting a long recording."""
import csv, io, json
from pathlib import Path

import datasets
import numpy as np
import pytest
import soundfile as sf
import srt
import torch
import webvtt

from asr_finetuner.evaluate import evaluate
from asr_finetuner.transcribe import format_transcripts, transcribe
from asr_finetuner.audio import load_audio, pad_to_window
from asr_finetuner.config import InputError
from asr_finetuner.packing import HOP, TIME_PRECISION, clip_starts, label_segments
from asr_finetuner.preprocess import preprocess
from asr_finetuner.whisper import load_model, load_processor

PACK = dict(pack_seconds=20, pack_pause_seconds=0.5, timestamp_probability=0.5, prompt_probability=0.5)


@pytest.fixture(scope="module")
def packed(tmp_path_factory, tiny_model_dir_30s, sample_dir):
    "60 clips of the sample packed into windows of up to 20 s, for the 30 s tiny model: (manifest, train rows)."
    arts = tmp_path_factory.mktemp("packed")
    m = preprocess(artifact_name="it-packed", model_id=str(tiny_model_dir_30s), dataset_name=str(sample_dir),
                   max_train_samples=60, max_eval_samples=8, artifacts_dir=str(arts), num_proc=1, **PACK)
    return m, datasets.load_from_disk(m.path)["train"].with_format("numpy"), arts


@pytest.fixture(scope="module")
def sample_rows(sample_dir):
    "file name -> (speaker, transcript, position in metadata.csv) of the sample's training clips."
    with open(sample_dir / "train" / "metadata.csv", encoding="utf-8", newline="") as f:
        return {r["file_name"]: (r["speaker"], r["transcription"], i) for i, r in enumerate(csv.DictReader(f))}


def clips_of(row):
    return [Path(s).name for s in str(row["source"]).split(" + ")]


def test_windows_fit_and_hold_one_speaker_in_source_order(packed, sample_rows):
    m, rows, _ = packed
    assert m.source["speaker_column"] == "speaker"
    windows = [clips_of(r) for r in rows]
    assert sorted(c for w in windows for c in w) == sorted(set(c for w in windows for c in w)) and sum(map(len, windows)) == 60
    assert max(float(r["duration"]) for r in rows) <= 20 and max(map(len, windows)) >= 3
    for w, r in zip(windows, rows):
        assert len({sample_rows[c][0] for c in w}) == 1 and str(r["speaker"]) == sample_rows[w[0]][0]  # one speaker
        assert [sample_rows[c][2] for c in w] == sorted(sample_rows[c][2] for c in w)  # in source order
        assert str(r["text"]) == " ".join(sample_rows[c][1] for c in w)


def test_timestamped_labels_decode_to_the_clips_and_their_times(packed, sample_rows, tiny_model_dir_30s):
    m, rows, _ = packed
    tok = load_processor(str(tiny_model_dir_30s)).tokenizer
    first, notimestamps = tok.convert_tokens_to_ids(["<|0.00|>", "<|notimestamps|>"])
    stamped = [r for r in rows if notimestamps not in r["labels"]]
    assert 0 < len(stamped) < len(rows)
    for r in stamped:
        clips, segments = clips_of(r), label_segments(list(r["labels"]), first)
        assert [tok.decode(ids).strip() for _, _, ids in segments] == [sample_rows[c][1] for c in clips]
        durations = [len(load_audio(str(Path(m.source["dataset_name"]) / "train" / c))) / 16_000 for c in clips]
        starts = [s * HOP / 16_000 for s in clip_starts(durations, PACK["pack_pause_seconds"])]
        for (start, end, _), s, d in zip(segments, starts, durations):
            assert abs(start - s) <= TIME_PRECISION / 2 + 1e-9 and abs(end - (s + d)) <= TIME_PRECISION / 2 + 1e-9
        assert segments[-1][1] <= float(r["duration"]) + TIME_PRECISION


def test_window_features_match_the_feature_extractor_on_the_joined_audio(packed, tiny_model_dir_30s):
    "Joined stored frames with the window's floor re-applied, against the extractor run on the joined audio."
    m, rows, _ = packed
    fe = load_processor(str(tiny_model_dir_30s)).feature_extractor
    worst_inside, worst_join, checked = 0.0, 0.0, 0
    for r in [r for r in rows if len(clips_of(r)) >= 3][:3]:
        audio = [load_audio(str(Path(m.source["dataset_name"]) / "train" / c)) for c in clips_of(r)]
        starts = clip_starts([len(a) / 16_000 for a in audio], PACK["pack_pause_seconds"])
        joined = np.zeros(starts[-1] * HOP + len(audio[-1]), np.float32)
        for s, a in zip(starts, audio): joined[s * HOP:s * HOP + len(a)] = a
        reference = fe(joined, sampling_rate=16_000, return_tensors="np").input_features[0]
        ours = pad_to_window(np.asarray(r["log_mel_frames"]), fe.nb_max_frames)
        error = np.abs(ours - reference).max(axis=0)  # per frame
        joins = np.zeros(len(error), bool)
        for s in starts[1:]: joins[s:s + 2] = True
        worst_inside, worst_join, checked = max(worst_inside, error[~joins].max()), max(worst_join, error[joins].max()), checked + 1
    print(f"max abs error: {worst_inside:.4f} away from joins, {worst_join:.4f} on the first two frames of each joined clip")
    assert checked == 3
    assert worst_inside < 4e-3  # float16 rounding of values within [-1.5, 2]: the same as unpacked clips
    assert worst_join < 0.6  # two frames per join, of a log-mel scaled to about [-1.5, 2]


def test_prompts_are_read_by_the_decoder_and_carry_no_loss(packed, tiny_model_dir_30s):
    from asr_finetuner.train import WhisperCollator
    m, rows, _ = packed
    model = load_model(str(tiny_model_dir_30s)).eval()
    collate = WhisperCollator(3000, model.config.decoder_start_token_id, pad_token_id=model.config.pad_token_id)
    row = next(r for r in rows if len(r["prompt_ids"]))
    assert int(row["prompt_ids"][0]) == 50361 and not any(len(r["prompt_ids"]) and r["labels"][0] != 50258 for r in rows)
    batch = collate([row])
    n = len(row["prompt_ids"])
    assert batch["decoder_input_ids"][0, :n].tolist() == list(row["prompt_ids"]) and (batch["labels"][0, :n] == -100).all()
    assert batch["labels"][0, n:].tolist() == list(row["labels"][1:])
    other = collate([{**row, "prompt_ids": np.array([50361] + [11] * (n - 1))}])
    with torch.no_grad():
        a, b = model(**batch), model(**other)
    assert not torch.allclose(a.logits[0, n:], b.logits[0, n:])  # the decoder reads the prompt ...
    logp = torch.log_softmax(a.logits[0], -1)
    scored = batch["labels"][0] != -100
    manual = -logp[scored].gather(1, batch["labels"][0][scored][:, None]).mean()
    assert torch.allclose(a.loss, manual, atol=1e-5)  # ... and the loss is over the label's tokens only


def test_manifest_records_the_packing_and_eval_stays_unpacked(packed):
    m, rows, arts = packed
    k = m.splits["train"]["packing"]
    assert k["windows"] == len(rows) and k["clips_per_window_max"] == max(len(clips_of(r)) for r in rows)
    assert abs(k["clips_per_window_mean"] - 60 / len(rows)) < 1e-3
    assert abs(k["seconds_per_window_mean"] - float(np.mean([float(r["duration"]) for r in rows]))) < 1e-3
    notimestamps = 50363
    assert abs(k["timestamp_share"] - np.mean([notimestamps not in r["labels"] for r in rows])) < 1e-3
    assert abs(k["prompt_share"] - np.mean([len(r["prompt_ids"]) > 0 for r in rows])) < 1e-3
    ev = datasets.load_from_disk(m.path)["eval"]
    assert m.splits["eval"]["packing"] is None and len(ev) == 8 and all(len(p) == 0 for p in ev["prompt_ids"])


def test_a_packed_artifact_trains_with_no_new_parameter(packed, tiny_model_dir_30s, sample_dir, tmp_path):
    from asr_finetuner.train import train
    m, rows, arts = packed
    metrics = train(model_name="tiny-packed", model_id=str(tiny_model_dir_30s), dataset_name=str(sample_dir), artifact_name="it-packed",
                    artifacts_dir=str(arts), output_dir=str(tmp_path / "out"), max_steps=2, eval_steps=2, save_steps=2,
                    logging_steps=1, warmup_steps=0, train_batch_size=4, eval_batch_size=8, generation_max_length=4,
                    speed_perturbation=0.1)
    per_row = float(np.mean([float(r["duration"]) for r in rows]))
    assert metrics.train_audio_seconds_per_second == pytest.approx(metrics.train_samples_per_second * per_row, rel=1e-6)
    card = (tmp_path / "out" / "README.md").read_text()
    assert "packed into windows of up to 20 s" in card and "segment timestamps in" in card and "previous-text prompts in" in card


def test_windows_longer_than_the_model_takes_are_refused(tmp_path, tiny_model_dir, sample_dir):
    with pytest.raises(InputError, match="pack_seconds=20 is above the model's window of 5 s"):
        preprocess(artifact_name="x", model_id=str(tiny_model_dir), dataset_name=str(sample_dir), artifacts_dir=str(tmp_path),
                   pack_seconds=20)


@pytest.fixture(scope="module")
def timestamped_tiny(tmp_path_factory, tiny_model_dir, sample_dir):
    """The 5 s tiny model fine-tuned (overfit) on 12 clips of the sample packed into windows of up to 5 s, every window
    labelled with segment timestamps: (model folder, the windows' clips in order)."""
    from asr_finetuner.train import train
    work = tmp_path_factory.mktemp("timestamped")
    m = preprocess(artifact_name="it-stamped", model_id=str(tiny_model_dir), dataset_name=str(sample_dir), max_train_samples=12,
                   max_eval_samples=2, artifacts_dir=str(work), num_proc=1, pack_seconds=5, pack_pause_seconds=0.4,
                   timestamp_probability=1.0)
    rows = datasets.load_from_disk(m.path)["train"]
    train(model_name="tiny-stamped", model_id=str(tiny_model_dir), dataset_name=str(sample_dir), artifact_name="it-stamped",
          artifacts_dir=str(work), output_dir=str(work / "model"), max_steps=150, eval_steps=1000, save_steps=1000,
          logging_steps=50, warmup_steps=10, train_batch_size=4, eval_batch_size=2, learning_rate=3e-3, generation_max_length=4)
    return work / "model", [s for r in rows for s in str(r["source"]).split(" + ")]


def test_a_model_trained_on_timestamped_windows_segments_a_long_recording(timestamped_tiny, sample_rows, tmp_path):
    """Two minutes of the training clips 0.4 s apart, through `transcribe` (the long-form algorithm, 24 windows of 5 s) and
    long-form `evaluate`: timestamps in every window, several segments per window, inside the file and in order; JSON,
    SRT and VTT parse."""
    model_dir, clips = timestamped_tiny
    pause, parts, said = np.zeros(int(0.4 * 16_000), np.float32), [], []
    while sum(map(len, parts)) < 120 * 16_000:  # whole clips, over and over, until two minutes
        c = clips[len(said) % len(clips)]
        parts += [load_audio(c), pause]; said.append(sample_rows[Path(c).name][1])
    long, duration = tmp_path / "long.wav", round(sum(map(len, parts)) / 16_000, 3)
    sf.write(long, np.concatenate(parts), 16_000)
    res = transcribe(model_id=str(model_dir), audio=str(long), output_format="json", output_file=str(tmp_path / "t.json"),
                        generation_max_length=32, temperature=0)
    assert json.loads((tmp_path / "t.json").read_text()) == res and res[0]["duration"] == duration
    segments = res[0]["segments"]
    assert all(0 <= s["start"] <= s["end"] <= duration for s in segments)
    assert all(a["end"] <= b["start"] for a, b in zip(segments, segments[1:]))  # in order, not overlapping
    assert len(segments) >= 36  # more than one segment per 5 s window on average: it segments, window by window
    assert np.mean([s["text"] in said for s in segments]) >= 0.8  # what it learned: the clips' own transcripts
    assert len(list(srt.parse(format_transcripts(res, "srt")))) == len(segments)
    assert len(webvtt.from_buffer(io.StringIO(format_transcripts(res, "vtt"))).captions) == len(segments)
    with open(tmp_path / "long.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("audio", "text", "split"), (long, " ".join(said), "test")])
    m = evaluate(model_id=str(model_dir), dataset_name=str(tmp_path / "long.csv"), eval_split="test", long_form=True,
                    output_dir=str(tmp_path / "eval"), generation_max_length=32)
    print(f"{len(segments)} segments, {np.mean([s['text'] in said for s in segments]):.2f} of them a clip's transcript; "
          f"{m.windows} windows, timestamps in {m.timestamp_window_share:.2f}; long-form WER {m.wer:.3f}")
    assert m.windows >= 24 and m.timestamp_window_share == 1.0 and m.wer < 0.85  # a random model: above 1


def test_cli_flags_make_the_same_packed_artifact(packed, tmp_path, tiny_model_dir_30s, sample_dir):
    "The packing parameters under the same names on the command line: the same windows, labels and prompts, byte for byte."
    from asr_finetuner.artifacts import read_manifest
    from asr_finetuner.cli import main
    m, _, _ = packed
    main(["preprocess", "--artifact_name", "it-packed", "--model_id", str(tiny_model_dir_30s), "--dataset_name", str(sample_dir),
          "--max_train_samples", "60", "--max_eval_samples", "8", "--artifacts_dir", str(tmp_path), "--num_proc", "1",
          "--pack_seconds", "20", "--pack_pause_seconds", "0.5", "--timestamp_probability", "0.5", "--prompt_probability", "0.5"])
    cli = read_manifest(tmp_path / "it-packed")
    assert cli.fingerprint == m.fingerprint and cli.splits["train"]["packing"] == m.splits["train"]["packing"]
