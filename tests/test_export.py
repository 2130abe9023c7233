"""Export for deployment, on a tiny model with the real 30 s window trained on four clips of the sample (a random model
has near-ties that flip greedy tokens and scores about 100% WER whatever the export does): the train job's
export_formats, both runtimes loading their export, the float32 CTranslate2 export's greedy tokens, a broken export
failing its check with exit 2, and evaluate and transcribe on each backend."""
import csv, dataclasses, json

import numpy as np
import pytest

from asr_finetuner import export as ex
from asr_finetuner.cli import main
from asr_finetuner.evaluate import evaluate
from asr_finetuner.transcribe import transcribe
from asr_finetuner import convert, runtimes
from asr_finetuner.eval_data import artifact_audio_utterances
from asr_finetuner.scoring import EvalMetrics
from asr_finetuner.preprocess import preprocess
from asr_finetuner.train import train
from asr_finetuner.train_outputs import TrainMetrics

pytest.importorskip("ctranslate2", reason="the export extra is part of dev: pip install -e '.[dev]'")
pytestmark = pytest.mark.xdist_group("export")  # one worker trains and exports the module's model once, not one per worker


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model_dir_30s, sample_dir):
    "Trained until it transcribes its four clips, then exported both ways by the train job (export_formats)."
    d = tmp_path_factory.mktemp("export")
    with open(sample_dir / "train" / "metadata.csv", encoding="utf-8", newline="") as f:
        rows = [r for r in csv.DictReader(f)][:4]
    manifest = d / "four.csv"
    with open(manifest, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f); w.writerow(["path", "text", "split"])
        for split in ("train", "test"):
            for r in rows: w.writerow([str(sample_dir / "train" / r["file_name"]), r["transcription"], split])
    preprocess(artifact_name="it-four", model_id=str(tiny_model_dir_30s), dataset_name=str(manifest), artifacts_dir=str(d / "arts"), num_proc=1)
    out = d / "model"
    m = train(model_name="tiny-30s", model_id=str(tiny_model_dir_30s), dataset_name=str(manifest), artifact_name="it-four",
              artifacts_dir=str(d / "arts"), output_dir=str(out), max_steps=60, eval_steps=1000, save_steps=1000, logging_steps=30,
              warmup_steps=5, train_batch_size=4, eval_batch_size=4, learning_rate=3e-3, generation_max_length=32, freeze_encoder=True,
              export_formats="ctranslate2:float16,ggml:f16")
    return {"out": out, "metrics": m, "arts": d / "arts", "manifest": manifest, "clips": [str(sample_dir / "train" / r["file_name"]) for r in rows],
            "texts": [r["transcription"] for r in rows]}


def test_train_exports_both_formats_each_checked_by_wer(trained):
    out, m = trained["out"], trained["metrics"]
    assert m.step_0["wer"] > 0.9 and m.final["wer"] < 0.8, m.final  # it learnt its clips: WER can tell a good export from a broken one
    assert [(e["format"], e["quantization"], e["status"]) for e in m.exports] == [("ctranslate2", "float16", "ok"), ("ggml", "f16", "ok")]
    assert TrainMetrics.read(out / "metrics.json").exports == m.exports
    ct2, ggml = out / "export" / "ctranslate2-float16", out / "export" / "ggml-f16"
    assert {"model.bin", "config.json", "tokenizer.json", "preprocessor_config.json", "export.json"} <= {p.name for p in ct2.iterdir()}
    assert json.loads((ct2 / "preprocessor_config.json").read_text())["feature_size"] == 80
    assert runtimes.detect_backend(str(ct2)) == "ctranslate2" and runtimes.detect_backend(str(ggml)) == "ggml" and runtimes.detect_backend(str(out)) == "transformers"
    for folder in (ct2, ggml):
        info = json.loads((folder / "export.json").read_text())
        assert (info["language"], info["task"], info["status"]) == ("it", "transcribe", "ok")
        threshold = json.loads((out / "generation_config.json").read_text())["calibrated_no_speech_threshold"]
        assert info["calibrated_no_speech_threshold"] == threshold == m.checks["final"]["calibrated_threshold"]  # for the bare runtimes
        assert runtimes.open_runtime(str(folder)).no_speech_threshold == threshold  # what transcribe gates with
        p = info["parity"]
        assert p["clips"] == 4 and p["data"]["artifact_name"] == "it-four" and p["wer_increase"] <= 1.0, p
        assert p["source"]["wer"] == pytest.approx(m.final["wer"], abs=1e-9)  # the same model, decoded the same way, on the clips' audio
        assert p["export"]["real_time_factor"] > 0 and info["size_mb"] > 0
        assert {k: (v["clips"], 0 <= v["greedy"] <= 1, 0 <= v["gated"] <= 1) for k, v in p["silence"].items()} == {
            "source": (5, True, True), "export": (5, True, True)}  # each runtime's own decoding of the non-speech clips
    card = (out / "README.md").read_text()
    assert f"--no-speech-thold {threshold:.3g}" in card.split("## Exports for deployment")[1]
    assert "## Exports for deployment" in card and "| `export/ctranslate2-float16` | faster-whisper" in card and "| `export/ggml-f16` | whisper.cpp" in card
    assert len(ex.exports_table(out)) == 2


def test_float32_ctranslate2_export_gives_the_source_models_greedy_tokens(trained, tmp_path):
    import ctranslate2, torch
    from asr_finetuner.audio import load_audio
    from asr_finetuner.whisper import load_model, load_processor
    folder = tmp_path / "f32"
    ex.export(model_id=str(trained["out"]), format="ctranslate2", quantization="float32", output_dir=str(folder), parity_check=False)
    model, processor = load_model(trained["out"]).eval(), load_processor(trained["out"])
    fe, tok = processor.feature_extractor, processor.tokenizer
    feats = fe([load_audio(c, 16_000) for c in trained["clips"]], sampling_rate=16_000, return_tensors="np").input_features
    with torch.inference_mode():
        ours = model.generate(torch.from_numpy(feats), max_length=32)
    prompt = tok.convert_tokens_to_ids(["<|startoftranscript|>", "<|it|>", "<|transcribe|>", "<|notimestamps|>"])
    theirs = ctranslate2.models.Whisper(str(folder), device="cpu").generate(
        ctranslate2.StorageView.from_array(np.ascontiguousarray(feats)), [prompt] * len(feats), beam_size=1, max_length=32)
    strip = lambda ids: [i for i in ids if i < tok.convert_tokens_to_ids("<|endoftext|>")]
    assert [strip(r.sequences_ids[0]) for r in theirs] == [strip(row.tolist()) for row in ours]
    assert all(len(strip(row.tolist())) > 3 for row in ours)  # real transcripts, not empty ones


def test_a_broken_export_fails_its_check_with_exit_2(trained, tmp_path, monkeypatch, capsys):
    "A converter bug (the token embedding written negated) is caught by the parity check; the export stays, marked failed."
    real = convert._write_tensor
    def negated_embedding(f, name, data, kind):
        return real(f, name, -data if name == "decoder.token_embedding.weight" else data, kind)
    monkeypatch.setattr(convert, "_write_tensor", negated_embedding)
    out = tmp_path / "broken"
    with pytest.raises(SystemExit) as e:
        main(["export", "--model_id", str(trained["out"]), "--format", "ggml", "--output_dir", str(out),
              "--artifact_name", "it-four", "--artifacts_dir", str(trained["arts"]), "--generation_max_length", "40"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "export scores WER" in err and "against the source model's" in err and "above max_wer_increase=1" in err and "Traceback" not in err
    info = json.loads((out / "export.json").read_text())
    assert info["status"] == "failed" and not info["parity"]["passed"] and (out / "ggml-model-f16.bin").is_file()


def test_a_check_without_clips_asks_for_a_dataset(trained, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["export", "--model_id", str(trained["out"]), "--output_dir", str(tmp_path / "x")])
    assert e.value.code == 2 and "give dataset_name" in capsys.readouterr().err


@pytest.mark.parametrize("backend, where", [("ctranslate2", "export/ctranslate2-float16"), ("ggml", "export/ggml-f16/ggml-model-f16.bin")])
def test_evaluate_and_transcribe_run_on_each_backend(trained, tmp_path, backend, where):
    model_id = str(trained["out"] / where)
    m = evaluate(model_id=model_id, artifact_name="it-four", artifacts_dir=str(trained["arts"]), output_dir=str(tmp_path / "eval"),
                 generation_max_length=40)
    assert m.data["backend"] == backend and m.num_utterances == 4 and backend in m.device
    assert m.wer <= trained["metrics"].final["wer"] + 0.01  # the export scores what the model did (its parity check said so)
    (r,) = transcribe(model_id=model_id, audio=trained["clips"][:1], output_format="json", output_file=str(tmp_path / "t.json"),
                      temperature=0, generation_max_length=40)
    assert r["text"] and r["segments"] and r["segments"][0]["end"] > r["segments"][0]["start"] >= 0
    import soundfile as sf
    assert r["duration"] == pytest.approx(sf.info(trained["clips"][0]).duration, abs=0.01)


SAME_IN_EVERY_RUNTIME = ("language", "task", "num_beams", "num_utterances", "num_empty_references", "skipped", "num_skipped",
                         "audio_seconds", "long_form", "windows")


@pytest.mark.parametrize("long_form", [False, True])
def test_the_transformers_and_ctranslate2_runtimes_fill_the_same_metrics(trained, tmp_path, long_form):
    "One evaluate loop serves every runtime: the same EvalMetrics fields are set, with the same counts, in either mode."
    ct2 = trained["out"] / "export" / "ctranslate2-float16"
    where = dict(dataset_name=str(trained["manifest"]), eval_split="test") if long_form else dict(artifact_name="it-four", artifacts_dir=str(trained["arts"]))
    t, c = (evaluate(model_id=str(model), output_dir=str(tmp_path / name), generation_max_length=40, long_form=long_form, **where).to_dict()
            for name, model in (("transformers", trained["out"]), ("ctranslate2", ct2)))
    assert set(t) == set(c) == {f.name for f in dataclasses.fields(EvalMetrics)}
    assert {k for k, v in t.items() if v is None} == {k for k, v in c.items() if v is None}  # no field the runtime path leaves out
    assert set(t["data"]) == set(c["data"]) and (t["data"]["backend"], c["data"]["backend"]) == ("transformers", "ctranslate2")
    assert {k: t[k] for k in SAME_IN_EVERY_RUNTIME} == {k: c[k] for k in SAME_IN_EVERY_RUNTIME}
    assert t["num_utterances"] == 4 and t["long_form"] is long_form
    if long_form:  # one 30 s window a clip, each timed by both runtimes
        assert t["windows"] == 4 and t["timestamp_window_share"] is not None and c["timestamp_window_share"] is not None
    else: assert t["windows"] is None and t["timestamp_window_share"] is None
    assert c["wer"] <= t["wer"] + 0.01  # the float16 export passed its parity check: it scores what the model does


@pytest.mark.parametrize("long_form", [False, True])
def test_num_beams_and_the_length_cap_reach_the_ctranslate2_runtime(trained, tmp_path, monkeypatch, long_form):
    seen, real = [], runtimes.CTranslate2Runtime._run
    def spy(self, audio, language, task, **options):
        seen.append(options); return real(self, audio, language, task, **options)
    monkeypatch.setattr(runtimes.CTranslate2Runtime, "_run", spy)
    where = dict(dataset_name=str(trained["manifest"]), eval_split="test") if long_form else dict(artifact_name="it-four", artifacts_dir=str(trained["arts"]))
    m = evaluate(model_id=str(trained["out"] / "export" / "ctranslate2-float16"), output_dir=str(tmp_path / "eval"), num_beams=3,
                 generation_max_length=24, long_form=long_form, **where)
    assert m.num_beams == 3 and len(seen) == 4
    assert {o["beam_size"] for o in seen} == {3} and {o["max_new_tokens"] for o in seen} == {24 if long_form else 20}  # 4 prompt tokens


def test_unreadable_artifact_sources_ask_for_a_dataset(sample_dir):
    import datasets
    from collections import Counter
    clip = str(next((sample_dir / "test").glob("*.ogg")))
    rows = datasets.Dataset.from_dict({"source": [clip, "/gone/a.wav", clip], "text": ["a", "b", "c"], "duration": [2.0, 2.0, 40.0]})
    skipped = Counter()
    with pytest.raises(ex.InputError, match="Cannot read 1 of the source files of artifact it-x's eval split .*/gone/a.wav.* give dataset_name"):
        artifact_audio_utterances(rows, 30.0, skipped, "it-x")
    assert skipped == {"too long": 1}
    assert len(list(artifact_audio_utterances(rows.select([0, 2]), 30.0, Counter(), "it-x"))) == 1


@pytest.mark.parametrize("backend, where", [("transformers", "."), ("ctranslate2", "export/ctranslate2-float16"), ("ggml", "export/ggml-f16")])
def test_vad_decodes_the_speech_of_a_long_recording_in_its_own_time(trained, tmp_path, backend, where):
    "Two clips in 40 s of silence: with vad, every segment starts and ends where a clip is in the file (the regions are decoded joined, as faster-whisper does)."
    import soundfile as sf
    from asr_finetuner.audio import load_audio
    clips = [load_audio(c, 16_000) for c in trained["clips"][:2]]
    gaps = [np.zeros(16_000 * s, np.float32) for s in (12, 15, 6)]
    audio = np.concatenate([gaps[0], clips[0], gaps[1], clips[1], gaps[2]])
    starts = [12.0, 12 + len(clips[0]) / 16_000 + 15]
    spans = [(s - 0.5, s + len(c) / 16_000 + 0.5) for s, c in zip(starts, clips)]
    path = tmp_path / "gaps.wav"
    sf.write(path, audio, 16_000)
    (r,) = transcribe(model_id=str(trained["out"] / where), audio=[str(path)], output_format="json", output_file=str(tmp_path / "t.json"),
                      vad=True, temperature=0, generation_max_length=40)
    assert r["segments"] and r["duration"] == pytest.approx(len(audio) / 16_000, abs=0.01)
    inside = lambda t: any(a <= t <= b for a, b in spans)
    assert all(inside(s["start"]) and inside(s["end"]) for s in r["segments"]), (r["segments"], spans)
    assert r["text"] and r["segments"][0]["start"] > 11  # the 12 s of silence before the first clip were never decoded
    if backend == "transformers":  # long-form evaluate takes vad too: the clips' speech is found and scored
        m = evaluate(model_id=str(trained["out"]), dataset_name=str(trained["manifest"]), eval_split="test", long_form=True, vad=True,
                     output_dir=str(tmp_path / "eval"), generation_max_length=40)
        assert m.long_form and m.num_utterances == 4 and m.windows == 4 and m.wer <= 1.0


def two_clips_with_pauses(trained, path):
    "The first two clips with 3, 4 and 2 s of silence around them, written to `path`."
    import soundfile as sf
    from asr_finetuner.audio import load_audio
    clips = [load_audio(c, 16_000) for c in trained["clips"][:2]]
    silence = lambda s: np.zeros(int(s * 16_000), np.float32)
    sf.write(path, np.concatenate([silence(3), clips[0], silence(4), clips[1], silence(2)]), 16_000)
    return path


@pytest.mark.parametrize("backend, where", [("transformers", "."), ("ctranslate2", "export/ctranslate2-float16"), ("ggml", "export/ggml-f16")])
def test_word_timestamps_in_json_and_subtitle_lines_cut_by_words(trained, tmp_path, backend, where):
    "Each runtime's words: in JSON, spelling their segment, in order, with a probability; in SRT, lines of at most 12 characters."
    import srt
    path = two_clips_with_pauses(trained, tmp_path / "two.wav")
    common = dict(model_id=str(trained["out"] / where), audio=[str(path)], word_timestamps=True, temperature=0, generation_max_length=40)
    (r,) = transcribe(output_format="json", output_file=str(tmp_path / "t.json"), **common)
    assert json.loads((tmp_path / "t.json").read_text())[0]["segments"] == r["segments"]
    assert r["segments"] and all(s["words"] for s in r["segments"])
    for s in r["segments"]:
        assert "".join(w["word"] for w in s["words"]).split() == s["text"].split()
        assert (s["start"], s["end"]) == (s["words"][0]["start"], s["words"][-1]["end"])  # a segment spans its words
    words = [w for s in r["segments"] for w in s["words"]]
    assert all(0 <= w["start"] <= w["end"] <= r["duration"] and 0 <= w["probability"] <= 1 for w in words)
    assert [w["start"] for w in words] == sorted(w["start"] for w in words)
    if backend != "ggml":  # whisper.cpp forces no timestamps on a 2-layer decoder (its test for the first distilled models)
        assert words[-1]["end"] - words[0]["start"] > 1.0
    for count in (None, 1):
        transcribe(output_format="srt", output_dir=str(tmp_path / f"subs{count}"), max_line_width=12, max_line_count=count, **common)
        cues = list(srt.parse((tmp_path / f"subs{count}" / "two.srt").read_text(encoding="utf-8")))
        lines = [line for c in cues for line in c.content.split("\n")]
        assert " ".join(lines).split() == r["text"].split()  # every word once, in order
        assert all(len(line) <= 12 or " " not in line for line in lines)  # a longer word has a line of its own
        most = max(len(c.content.split("\n")) for c in cues)
        assert most == 1 if count == 1 else most > 1  # a cue a segment, its text in lines; or cues of one line each


def test_the_train_job_reselects_the_alignment_heads_word_timestamps_then_use(trained, tmp_path):
    from asr_finetuner.audio import load_audio
    from asr_finetuner.config import DecodingOptions
    out, h = trained["out"], trained["metrics"].alignment_heads
    assert h["reselected"] and h["median_error_s"] < h["original_median_error_s"] and (h["windows"], h["clips"]) == (1, 4), h
    assert TrainMetrics.read(out / "metrics.json").alignment_heads == h
    assert json.loads((out / "generation_config.json").read_text())["alignment_heads"] == h["heads"]
    ct2 = out / "export" / "ctranslate2-float16"
    assert json.loads((ct2 / "config.json").read_text())["alignment_heads"] == h["heads"]  # faster-whisper's word timestamps use them
    for folder in (ct2, out / "export" / "ggml-f16"): assert json.loads((folder / "export.json").read_text())["alignment_heads"] == h["heads"]
    assert "Word timestamps: alignment heads" in (out / "README.md").read_text()
    rt, audio = runtimes.TransformersRuntime(str(out)), [load_audio(str(two_clips_with_pauses(trained, tmp_path / "two.wav")), 16_000)]
    times = lambda: [(w["start"], w["end"]) for s in rt.long(audio, "Italian", "transcribe", DecodingOptions(max_length=40, word_timestamps=True))[0]["segments"]
                     for w in s["words"]]
    saved = times()
    rt.model.generation_config.alignment_heads = h["original_heads"]
    assert times() != saved  # the heads decide the words' times: generate timed them with the saved ones
