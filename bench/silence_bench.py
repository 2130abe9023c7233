"""Silence and word timestamps with a real Whisper base: fine-tunes with and without non-speech rows, scored on
non-speech clips, held-out speech and long recordings with long gaps, with and without VAD.

    .venv/bin/python bench/silence_bench.py data   --work /tmp/asr-silence
    .venv/bin/python bench/silence_bench.py run    --work /tmp/asr-silence --name default      # then default-ns, overfit, overfit-ns
    .venv/bin/python bench/silence_bench.py score  --work /tmp/asr-silence --name base         # and each run's name
    .venv/bin/python bench/silence_bench.py long   --work /tmp/asr-silence --name base         # only the long recordings again
    .venv/bin/python bench/silence_bench.py words  --work /tmp/asr-silence --name default-ns   # word timestamps, both head sets
    .venv/bin/python bench/silence_bench.py report --work /tmp/asr-silence

Runs (batch 8, greedy decoding up to 128 tokens, evaluated at step 0 and at the end):
- default: the job's defaults (learning rate 1e-5), 40 steps;
- overfit: learning rate 1e-4 on 16 training clips, 30 steps (about 15 epochs), where calibration is likely to break;
- default-ns, overfit-ns: the same with `nospeech_share=0.05` (5% of the training windows without speech).

Needs the sample maker's tools (festival with its Italian voices, espeak-ng, fortunes-it), the sound effects of
Debian's sound-theme-freedesktop, the music of pingus-data (rendered by xmp), and the real Whisper base
(`../shared/tools/real_whisper/build.sh`, built into the work folder). Not part of the test suite. See SILENCE.md.
"""
import argparse, json, random, time
from pathlib import Path

import numpy as np

from common import build_model, sample_maker
from guardrails_bench import pairs, synthesise, write_manifest

SR = 16_000
N_TRAIN, N_HELDOUT = 200, 180
ARTIFACT = "sb-train"
NOSPEECH_SHARE = 0.05
RUNS = {
    "default": dict(),
    "default-ns": dict(nospeech_share=NOSPEECH_SHARE),
    "overfit": dict(learning_rate=1e-4, max_train_samples=16, max_steps=30, warmup_steps=3),
    "overfit-ns": dict(learning_rate=1e-4, max_train_samples=16, max_steps=30, warmup_steps=3, nospeech_share=NOSPEECH_SHARE),
}
KINDS = ("silence", "white", "pink", "brown", "hum", "music", "babble", "effects")
CLIPS_PER_KIND = 13  # 8 kinds x 13 = 104 non-speech clips
BLOCK_SENTENCES, BLOCKS, RECORDINGS = 3, 3, 12  # a long recording: blocks of 3 sentences, with gaps between them
GAP_SECONDS = (10.0, 30.0)
EFFECTS = Path("/usr/share/sounds/freedesktop/stereo")
MUSIC = Path("/usr/share/games/pingus/data/music")  # tracker modules, rendered to 16 kHz WAV by xmp
MUSIC_TRACKS = ("gd-cancn.it", "gd-giirm.s3m", "gd-ite.it", "gd-matth.it", "goin_march.it", "pingus-1.it")


# ---------------------------------------------------------------------------------------------------------------
# Data

def at_dbfs(x:np.ndarray, dbfs:float)->np.ndarray:
    "`x` scaled to an RMS level of `dbfs`."
    rms = np.sqrt(np.mean(x.astype(np.float64) ** 2)) or 1.0
    return (x * (10 ** (dbfs / 20) / rms)).astype(np.float32)


def read_mono(path:Path)->np.ndarray:
    from asr_finetuner.audio import load_audio
    return load_audio(str(path), SR)


def looped(parts:list, n:int, rng)->np.ndarray:
    "Recordings laid end to end with short random gaps (0.2-1.5 s of silence), cut to `n` samples."
    out = []
    while sum(len(p) for p in out) < n:
        out += [parts[rng.randrange(len(parts))], np.zeros(int(rng.uniform(0.2, 1.5) * SR), np.float32)]
    return np.concatenate(out)[:n]


def non_speech(kind:str, n:int, rng, speech:list, effects:list, music:list)->tuple:
    "One non-speech clip of `n` samples and its level (dBFS; None for silence)."
    from asr_finetuner.noise import pink_noise, white_noise
    seed = rng.randrange(2 ** 31)
    if kind == "silence": return np.zeros(n, np.float32), None
    if kind == "white": level = rng.uniform(-70, -30); return at_dbfs(white_noise(n, seed), level), level
    if kind == "pink": level = rng.uniform(-70, -30); return at_dbfs(pink_noise(n, seed), level), level
    if kind == "brown":
        level = rng.uniform(-60, -25); x = np.cumsum(white_noise(n, seed).astype(np.float64)); x -= np.linspace(x[0], x[-1], n)
        return at_dbfs(x.astype(np.float32), level), level
    if kind == "hum":
        level, f0, t = rng.uniform(-60, -25), rng.choice((50.0, 60.0)), np.arange(n) / SR
        return at_dbfs(sum(np.sin(2 * np.pi * f0 * k * t + k) / k for k in (1, 2, 3, 5)).astype(np.float32), level), level
    if kind == "music":
        level = rng.uniform(-35, -15); track = music[rng.randrange(len(music))]
        start = rng.randrange(max(1, len(track) - n)); return at_dbfs(np.resize(track[start:start + n], n), level), level
    if kind == "babble":  # six voices at once: speech nobody can follow
        level = rng.uniform(-45, -30); x = np.zeros(n, np.float32)
        for _ in range(6): x += at_dbfs(looped(speech, n, rng), -20)
        return at_dbfs(x, level), level
    if kind == "effects":
        level = rng.uniform(-35, -15); return at_dbfs(looped(effects, n, rng), level), level
    raise ValueError(kind)


def rendered_music(folder:Path)->list:
    "The pingus-data tracks, 90 s of each rendered to WAV by xmp (once)."
    import subprocess
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for track in MUSIC_TRACKS:
        wav = folder / (Path(track).stem + ".wav")
        if not wav.is_file():
            subprocess.run(["xmp", "-q", "-d", "wav", "-o", str(wav), "-t", "90", "-f", str(SR), "-m", str(MUSIC / track)], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out.append(wav)
    return out


def onset(x:np.ndarray, below_db:float=30.0)->float:
    "Seconds to a clip's first 10 ms frame within `below_db` of its loudest frame: where its first word starts."
    frames = x[: len(x) // 160 * 160].reshape(-1, 160)
    db = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
    return float(np.argmax(db > db.max() - below_db)) * 0.01


def gap_audio(kind:str, n:int, rng)->np.ndarray:
    from asr_finetuner.noise import pink_noise, white_noise
    if kind == "silence": return np.zeros(n, np.float32)
    noise = white_noise(n, rng.randrange(2 ** 31)) if kind == "white" else pink_noise(n, rng.randrange(2 ** 31))
    return at_dbfs(noise, rng.uniform(-60, -40))


def long_recordings(items:list, folder:Path, rng)->list:
    "Blocks of held-out sentences with gaps of 10-30 s of silence or noise between them, and where each block starts."
    import soundfile as sf
    out, k = [], 0
    for r in range(RECORDINGS):
        parts, blocks, gaps, t = [], [], [], 0.0
        for b in range(BLOCKS):
            if b:
                g = gap_audio(("silence", "white", "pink")[(r + b) % 3], int(rng.uniform(*GAP_SECONDS) * SR), rng)
                gaps.append((t, t + len(g) / SR)); parts.append(g); t += len(g) / SR
            sents = items[k:k + BLOCK_SENTENCES]; k += BLOCK_SENTENCES
            audio = np.concatenate([np.concatenate([s["audio"], np.zeros(int(0.5 * SR), np.float32)]) for s in sents])
            blocks.append({"start": round(t, 3), "first_word": round(t + onset(sents[0]["audio"]), 3), "end": round(t + len(audio) / SR, 3),
                           "text": " ".join(s["text"] for s in sents)})
            parts.append(audio); t += len(audio) / SR
        path = folder / f"long_{r:02d}.flac"; sf.write(str(path), np.concatenate(parts), SR, format="FLAC")
        out.append({"path": str(path), "duration": round(t, 3), "blocks": blocks, "gaps": [(round(a, 3), round(b, 3)) for a, b in gaps]})
    return out


def make_data(a):
    "Synthesise the speech, preprocess the training artifact, write the non-speech clips and the long recordings."
    import soundfile as sf
    from asr_finetuner.preprocess import preprocess
    work = a.work; model = build_model(work)
    msd = sample_maker()
    msd.N_SEEN, msd.N_UNSEEN = N_TRAIN, N_HELDOUT
    seen, heldout, pool = msd.select_sentences(a.seed)
    rng = random.Random(a.seed)
    def item(text, voice, split, i):
        return dict(text=text, voice=voice, name=f"{split}_{i:04d}_{voice}", speed=round(rng.uniform(*msd.SPEED_RANGE), 2),
                    pitch=round(rng.uniform(*msd.VOICES[voice][2]), 2))
    voices = ("festival_lp", "espeak-ng_it")
    train = [item(t, v, "train", i) for i, t in enumerate(seen) for v in voices]
    held = [item(t, voices[i % 2], "heldout", i) for i, t in enumerate(heldout)]
    data = work / "data"; audio = data / "audio"; audio.mkdir(parents=True, exist_ok=True)
    synthesise(train + held, audio)
    for it in train: it["path"] = str(audio / f"{it['name']}.flac"); sf.write(it["path"], it["audio"], SR, format="FLAC")
    speech_pairs = pairs(held, audio)
    write_manifest(data / f"{ARTIFACT}.csv", train, speech_pairs)
    preprocess(artifact_name=ARTIFACT, model_id=str(model), dataset_name=str(data / f"{ARTIFACT}.csv"), artifacts_dir=str(work / "artifacts"),
               if_exists="overwrite", num_proc=2)
    (data / "speech.json").write_text(json.dumps([{"path": p["path"], "text": p["text"]} for p in speech_pairs], indent=1, ensure_ascii=False))
    # non-speech clips, 5-30 s
    effects = [read_mono(p) for p in sorted(EFFECTS.glob("*.oga")) if not p.name.startswith("audio-channel")]  # those say the channel's name
    music = [read_mono(p) for p in rendered_music(work / "music")]
    babble_voices = [it["audio"] for it in train[:60]]
    ns, folder = [], data / "nonspeech"; folder.mkdir(exist_ok=True)
    for kind in KINDS:
        for i in range(CLIPS_PER_KIND):
            seconds = round(rng.uniform(5.0, 30.0), 2)
            x, level = non_speech(kind, int(seconds * SR), rng, babble_voices, effects, music)
            path = folder / f"{kind}_{i:02d}.flac"; sf.write(str(path), x, SR, format="FLAC")
            ns.append({"path": str(path), "kind": kind, "seconds": seconds, "dbfs": None if level is None else round(level, 1)})
    (data / "nonspeech.json").write_text(json.dumps(ns, indent=1))
    (data / "long").mkdir(exist_ok=True)
    long = long_recordings(held, data / "long", rng)
    (data / "long.json").write_text(json.dumps(long, indent=1, ensure_ascii=False))
    words = lambda rows: sum(len(r["text"].split()) for r in rows)
    facts = {"train_clips": len(train), "speech_clips": len(speech_pairs), "speech_words": words(speech_pairs),
             "nonspeech_clips": len(ns), "nonspeech_seconds": round(sum(c["seconds"] for c in ns), 1),
             "long_recordings": len(long), "long_seconds": round(sum(r["duration"] for r in long), 1),
             "long_blocks": sum(len(r["blocks"]) for r in long), "long_gaps": sum(len(r["gaps"]) for r in long),
             "long_gap_seconds": round(sum(b - a for r in long for a, b in r["gaps"]), 1),
             "long_words": sum(len(b["text"].split()) for r in long for b in r["blocks"]), "pool": pool,
             "effects": len(effects), "music_tracks": len(music)}
    (data / "facts.json").write_text(json.dumps(facts, indent=1))
    print(json.dumps(facts))


# ---------------------------------------------------------------------------------------------------------------
# Runs

def run(a):
    "One run of the train job on the training artifact."
    from asr_finetuner.train import train
    work, model = a.work, build_model(a.work)
    params = dict(model_name=a.name, model_id=str(model), dataset_name=str(work / "data" / f"{ARTIFACT}.csv"), artifact_name=ARTIFACT,
                  artifacts_dir=str(work / "artifacts"), output_dir=str(work / "runs" / a.name), max_steps=40, warmup_steps=4,
                  train_batch_size=8, eval_batch_size=16, logging_steps=1, generation_max_length=128, resume=False, seed=a.seed)
    params.update(RUNS[a.name])
    params.update(eval_steps=params["max_steps"], save_steps=params["max_steps"])
    start = time.time(); m = train(**params)
    (work / "runs" / f"{a.name}.json").write_text(json.dumps({"seconds": time.time() - start, "params": params}, indent=1))
    print(f"{a.name}: {(time.time() - start) / 60:.1f} min; warnings {m.warnings}")


def folder_of(work:Path, name:str)->Path: return build_model(work) if name == "base" else work / "runs" / name


def in_gap(t:float, gaps:list, margin:float=1.0)->bool: return any(a + margin <= t <= b - margin for a, b in gaps)
# A gap has text when a segment starts inside it (1 s in from either edge). A segment's middle would count the segments
# that run from one block to the next across a gap VAD cut out (their ends are mapped back apart), which hold no text of the gap.


def long_scores(runtime, recordings:list, options, word_timestamps:bool=False)->dict:
    "Decode the long recordings: WER, gaps given text, blocks lost, seconds, and (with words) first-word errors."
    from dataclasses import replace
    from asr_finetuner.text import asr_metrics
    from asr_finetuner.audio import load_audio
    audio = [load_audio(r["path"], SR) for r in recordings]
    if word_timestamps: options = replace(options, word_timestamps=True)
    start = time.time(); out = runtime.long(audio, "Italian", "transcribe", options); seconds = time.time() - start
    filled = lost = 0; errors = []
    for r, t in zip(recordings, out):
        filled += sum(any(in_gap(s["start"], [g]) for s in t["segments"]) for g in r["gaps"])
        lost += sum(not any(s["start"] <= b["end"] + 0.5 and s["end"] >= b["start"] - 0.5 for s in t["segments"]) for b in r["blocks"])
        if word_timestamps:
            words = [w for s in t["segments"] for w in s.get("words", [])]
            for b in r["blocks"]:
                after = [w for w in words if w["start"] >= b["start"] - 3.0]  # the gap before a block is >= 10 s
                if after: errors.append(abs(after[0]["start"] - b["first_word"]))
    wer = asr_metrics([t["text"] for t in out], [" ".join(b["text"] for b in r["blocks"]) for r in recordings])
    res = {"segments": [t["segments"] for t in out], "wer_normalized": wer["wer_normalized"], "gaps_with_text": filled, "gaps": sum(len(r["gaps"]) for r in recordings),
           "blocks_lost": lost, "blocks": sum(len(r["blocks"]) for r in recordings), "seconds": round(seconds, 1)}
    if word_timestamps: res.update(first_word_errors=[round(e, 3) for e in errors], median_first_word_error=float(np.median(errors)) if errors else None)
    return res


def score(a):
    "Non-speech clips (raw greedy and transcribe's decoding), speech through transcribe's decoding, the long recordings."
    import torch
    from asr_finetuner.audio import load_audio
    from asr_finetuner.checks import (auroc, calibrated_threshold, gated_hallucination_rate, hallucination_rate, no_speech_probabilities,
                                      transcribe_options, window_features)
    from asr_finetuner.runtimes import TransformersRuntime
    from asr_finetuner.text import asr_metrics
    torch.set_num_threads(2)
    work, data = a.work, a.work / "data"
    rt = TransformersRuntime(str(folder_of(work, a.name)))
    model, processor, own = rt.model, rt.processor, rt.no_speech_threshold
    ns = json.loads((data / "nonspeech.json").read_text()); speech = json.loads((data / "speech.json").read_text())
    clips = {Path(c["path"]).stem: load_audio(c["path"], SR) for c in ns}
    options = transcribe_options(own, max_length=128)
    res = {"own_threshold": own, "threshold_used": options.no_speech_threshold}
    t0 = time.time()
    raw = hallucination_rate(model, processor, clips, "Italian")
    gated = gated_hallucination_rate(model, processor, clips, "Italian", options=options)
    res["nonspeech"] = {"clips": len(clips), "raw": raw["hallucination_rate"], "gated": gated["hallucination_rate"],
                        "raw_by_kind": {k: sum(n.startswith(k) for n in raw["hallucinated"]) for k in KINDS},
                        "gated_by_kind": {k: sum(n.startswith(k) for n in gated["hallucinated"]) for k in KINDS},
                        "gated_texts": gated["hallucinated"], "seconds": round(time.time() - t0, 1)}
    speech_audio = [load_audio(s["path"], SR) for s in speech]
    p_ns = no_speech_probabilities(model, window_features(model, processor, clips))
    p_sp = no_speech_probabilities(model, window_features(model, processor, dict(enumerate(speech_audio))))
    res["no_speech"] = {"auroc": auroc(p_ns, p_sp), "median_nonspeech": float(np.median(p_ns)), "median_speech": float(np.median(p_sp)),
                        "calibrated_here": calibrated_threshold(p_sp, p_ns)}
    metrics = folder_of(work, a.name) / "metrics.json"
    if metrics.is_file():  # a run: the train job scored the same 90 clips at step 0 and at the end (greedy; CPU time saved here)
        m = json.loads(metrics.read_text()); end = m["checks"]["final"]
        res["speech"] = {"from": "the train job's evaluation (greedy, up to 128 tokens)", "wer_normalized": m["final"]["wer_normalized"],
                         "wer": m["final"]["wer"], "step_0_wer_normalized": m["step_0"]["wer_normalized"], "clips": m["eval_utterances"],
                         "empty": None, "calibrated": {k: end.get(f"calibrated_{k}") for k in ("threshold", "speech_skipped", "non_speech_caught")},
                         "alignment_heads": m.get("alignment_heads")}
    else:
        t0 = time.time(); out = rt.long(speech_audio, "Italian", "transcribe", options)
        res["speech"] = {**asr_metrics([t["text"] for t in out], [s["text"] for s in speech]), "clips": len(speech),
                         "words": sum(len(s["text"].split()) for s in speech), "empty": sum(not t["text"].strip() for t in out),
                         "seconds": round(time.time() - t0, 1), "from": "transcribe's decoding"}
    long = json.loads((data / "long.json").read_text())
    from dataclasses import replace
    res["long"] = {"plain": long_scores(rt, long, options), "vad": long_scores(rt, long, replace(options, vad=True))}
    (work / "scores").mkdir(exist_ok=True); (work / "scores" / f"{a.name}.json").write_text(json.dumps(res, indent=1, ensure_ascii=False))
    print(json.dumps({k: v for k, v in res.items() if k != "nonspeech"} | {"nonspeech": {k: v for k, v in res["nonspeech"].items() if k != "gated_texts"}}))


def long_only(a):
    "The long recordings' part of a model's scores again, the rest of its scores kept (the score stage writes it too)."
    import torch
    from dataclasses import replace
    from asr_finetuner.checks import transcribe_options
    from asr_finetuner.runtimes import TransformersRuntime
    torch.set_num_threads(2)
    path = a.work / "scores" / f"{a.name}.json"; res = json.loads(path.read_text())
    rt = TransformersRuntime(str(folder_of(a.work, a.name)))
    long, options = json.loads((a.work / "data" / "long.json").read_text()), transcribe_options(rt.no_speech_threshold, max_length=128)
    res["long"] = {"plain": long_scores(rt, long, options), "vad": long_scores(rt, long, replace(options, vad=True))}
    path.write_text(json.dumps(res, indent=1, ensure_ascii=False))
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "segments"} for k, v in res["long"].items()}))


def words(a):
    "First-word start errors on the long recordings, with the model's original alignment heads and with re-selected ones."
    import torch
    from asr_finetuner.checks import transcribe_options
    from asr_finetuner.runtimes import TransformersRuntime
    torch.set_num_threads(2)
    work = a.work; long = json.loads((work / "data" / "long.json").read_text())
    rt = TransformersRuntime(str(folder_of(work, a.name)))
    g = rt.model.generation_config
    heads = {"saved": [list(h) for h in g.alignment_heads]}
    options = transcribe_options(rt.no_speech_threshold, max_length=128)
    res = {"saved": long_scores(rt, long, options, word_timestamps=True)}
    original = json.loads((build_model(work) / "generation_config.json").read_text())["alignment_heads"]
    if heads["saved"] != original:
        g.alignment_heads = original; heads["original"] = original
        res["original"] = long_scores(rt, long, options, word_timestamps=True)
    else:  # the base model (or a run that kept its heads): re-select them here, as the train job does, on the artifact's eval rows
        from asr_finetuner.artifacts import load_artifact, seeded_subset
        from asr_finetuner.checks import ALIGNMENT_CLIPS, select_alignment_heads
        rows = seeded_subset(load_artifact(ARTIFACT, work / "artifacts")[0]["eval"], ALIGNMENT_CLIPS, a.seed)  # the runs were trained with seed a.seed
        chosen = select_alignment_heads(rt.model, rt.processor.tokenizer, [np.asarray(f) for f in rows["log_mel_frames"]], list(rows["labels"]))
        heads["selection"] = chosen
        if chosen["heads"] != original:
            g.alignment_heads = chosen["heads"]; heads["reselected"] = chosen["heads"]
            res["reselected"] = long_scores(rt, long, options, word_timestamps=True)
    res["heads"] = heads
    (work / "words").mkdir(exist_ok=True); (work / "words" / f"{a.name}.json").write_text(json.dumps(res, indent=1))
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk not in ("first_word_errors", "segments")} if k != "heads" else v for k, v in res.items()}))


# ---------------------------------------------------------------------------------------------------------------
# Report

def pct(x): return "-" if x is None else f"{100 * x:.1f}"


def report(a):
    work = a.work
    facts = json.loads((work / "data" / "facts.json").read_text())
    print(f"Data: {json.dumps(facts)}\n")
    print("| model | threshold (own) | text on non-speech, raw greedy | text on non-speech, transcribe | AUROC | p(no speech) median non-speech / speech "
          "| speech WER norm. (how) | long gaps with text, plain / vad | blocks lost, plain / vad | long WER norm., plain / vad | long seconds, plain / vad |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in ("base", *RUNS):
        path = work / "scores" / f"{name}.json"
        if not path.is_file(): continue
        s = json.loads(path.read_text()); n, lp = s["nonspeech"], s["long"]["plain"]
        lv = s["long"].get("vad", {"gaps_with_text": "-", "gaps": "-", "blocks_lost": "-", "blocks": "-", "wer_normalized": None, "seconds": "-"})
        own = "-" if s["own_threshold"] is None else f"{s['own_threshold']:.3g}"
        print(f"| {name} | {s['threshold_used']:.3g} ({own}) | {pct(n['raw'])}% ({round(n['raw'] * n['clips'])}/{n['clips']}) "
              f"| {pct(n['gated'])}% ({round(n['gated'] * n['clips'])}/{n['clips']}) | {s['no_speech']['auroc']:.3f} "
              f"| {s['no_speech']['median_nonspeech']:.3g} / {s['no_speech']['median_speech']:.3g} | {pct(s['speech']['wer_normalized'])} ({s['speech'].get('from', '')}) "
              f"| {lp['gaps_with_text']}/{lp['gaps']} / {lv['gaps_with_text']}/{lv['gaps']} | {lp['blocks_lost']}/{lp['blocks']} / {lv['blocks_lost']}/{lv['blocks']} "
              f"| {pct(lp['wer_normalized'])} / {pct(lv['wer_normalized'])} | {lp['seconds']} / {lv['seconds']} |")
    print()
    for name in ("base", *RUNS):
        path = work / "scores" / f"{name}.json"
        if path.is_file():
            n = json.loads(path.read_text())["nonspeech"]
            print(f"{name}: raw by kind {n['raw_by_kind']}; transcribe by kind {n['gated_by_kind']}; {n['gated_texts']}")
    for name in ("base", *RUNS):
        path = work / "words" / f"{name}.json"
        if path.is_file():
            w = json.loads(path.read_text())
            print(f"{name} words: " + "; ".join(f"{k} heads: median first-word error {v['median_first_word_error']:.3f} s over "
                                                 f"{len(v['first_word_errors'])} blocks" for k, v in w.items() if k != "heads") + f"; heads {w['heads']}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("stage", choices=("data", "run", "score", "long", "words", "report"))
    ap.add_argument("--work", type=Path, default=Path("/tmp/asr-silence"))
    ap.add_argument("--name", default="default")
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    {"data": make_data, "run": run, "score": score, "long": long_only, "words": words, "report": report}[a.stage](a)


if __name__ == "__main__":
    main()
