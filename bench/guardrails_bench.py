"""Fine-tuning without forgetting: three runs of the train job on a real Whisper base, scored on an in-domain and an
out-of-domain set, non-speech clips, language identification and a noisy copy of the held-out set.

    .venv/bin/python bench/guardrails_bench.py data  --work /tmp/asr-guardrails
    .venv/bin/python bench/guardrails_bench.py run   --work /tmp/asr-guardrails --name default   # then overfit, mixed
    .venv/bin/python bench/guardrails_bench.py report --work /tmp/asr-guardrails

Runs:
- default: the job's defaults (learning rate 1e-5, best_metric=wer_normalized on the in-domain eval split), batch 8;
- overfit: a deliberately over-fitted run, learning rate 1e-4 on 16 training clips, 30 steps (about 15 epochs), evaluated
  every 10;
- mixed: the defaults with 30% of the training rows drawn from general Italian data (other voices, other sentences)
  and pink noise at 0-20 dB SNR.

Needs the sample maker's tools (festival with its Italian voices, espeak-ng, fortunes-it) and the real Whisper base
(`../shared/tools/real_whisper/build.sh`, built into the work folder). Not part of the test suite. See GUARDRAILS.md.
"""
import argparse, csv, json, random, time
from pathlib import Path

from common import build_model, sample_maker

TRAIN_VOICES, OOD_VOICE, GENERAL_VOICES = ("festival_lp", "espeak-ng_it"), "festival_pc", ("espeak-ng_it+f2", "espeak-ng_it+m3", "espeak-ng_it+klatt")
N_TRAIN, N_HELDOUT, N_GENERAL = 300, 180, 300
PAUSE_SECONDS = 0.7  # between the two sentences of an eval clip: pauses the hallucination check can cut out
NOISY_SNR_DB = 5.0
ARTIFACTS = {"train": "gb-train", "ood": "gb-ood", "general": "gb-general", "noisy": "gb-noisy"}
RUNS = {
    "default": dict(),
    "overfit": dict(learning_rate=1e-4, max_train_samples=16, max_steps=30, eval_steps=10, warmup_steps=3),
    "mixed": dict(mix_artifacts=f"{ARTIFACTS['general']}:0.3", noise_snr="0,20", noise_type="pink"),
}


# ---------------------------------------------------------------------------------------------------------------
# Data

def synthesise(items:list, folder:Path):
    "Render each item (text, voice, speed, pitch) to a 16 kHz FLAC at item['path']."
    import tempfile
    msd = sample_maker()
    for v in GENERAL_VOICES: msd.VOICES.setdefault(v, ("espeak", v.split("_", 1)[1], (0.8, 1.25)))
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for it in items: it["wav"] = str(Path(tmp) / f"{it['name']}.wav")
        msd.synthesize(items, Path(tmp))
        for it in items:
            it["audio"] = msd.postprocess(it["wav"]).astype("float32")
    return msd


def pairs(items:list, folder:Path, sr:int=16_000)->list:
    "Consecutive items joined two by two, PAUSE_SECONDS apart: eval clips of two sentences."
    import numpy as np, soundfile as sf
    out = []
    for i in range(0, len(items) - 1, 2):
        a, b = items[i], items[i + 1]
        path = folder / f"{a['name']}+pair.flac"
        sf.write(str(path), np.concatenate([a["audio"], np.zeros(int(PAUSE_SECONDS * sr), np.float32), b["audio"]]), sr, format="FLAC")
        out.append({"path": str(path), "text": f"{a['text']} {b['text']}", "audio": None})
    return out


def noisy_copy(rows:list, folder:Path, snr_db:float, seed:int)->list:
    "The clips with pink noise added at `snr_db` (against the clip's own power)."
    import numpy as np, soundfile as sf
    from asr_finetuner.noise import pink_noise
    out = []
    for i, r in enumerate(rows):
        x, sr = sf.read(r["path"], dtype="float32")
        n = pink_noise(len(x), seed + i)
        n *= np.sqrt(np.mean(x ** 2) / np.mean(n ** 2) / 10 ** (snr_db / 10))
        path = folder / (Path(r["path"]).stem + "-noisy.flac")
        sf.write(str(path), (x + n).astype(np.float32), sr, format="FLAC")
        out.append({**r, "path": str(path)})
    return out


def write_manifest(path:Path, train:list, test:list):
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f); w.writerow(["path", "text", "split"])
        for split, rows in (("train", train), ("test", test)):
            for r in rows: w.writerow([str(r["path"]), r["text"], split])


def make_data(a):
    "Synthesise the sets, write a manifest per artifact, preprocess each into an artifact for the real Whisper base."
    from asr_finetuner.preprocess import preprocess
    import soundfile as sf
    work = a.work; model = build_model(work)
    msd = sample_maker()
    msd.N_SEEN, msd.N_UNSEEN = N_TRAIN + N_GENERAL, N_HELDOUT
    seen, heldout, pool = msd.select_sentences(a.seed)
    train_sents, general_sents = seen[:N_TRAIN], seen[N_TRAIN:]
    rng = random.Random(a.seed)
    def item(text, voice, split, i):
        speed_pitch = (0.8, 1.25) if voice in GENERAL_VOICES else msd.VOICES[voice][2]
        return dict(text=text, voice=voice, name=f"{split}_{i:04d}_{voice}", speed=round(rng.uniform(*msd.SPEED_RANGE), 2),
                    pitch=round(rng.uniform(*speed_pitch), 2))
    groups = {"train": [item(t, v, "train", i) for i, t in enumerate(train_sents) for v in TRAIN_VOICES],
              "heldout": [item(t, TRAIN_VOICES[i % 2], "heldout", i) for i, t in enumerate(heldout)],
              "ood": [item(t, OOD_VOICE, "ood", i) for i, t in enumerate(heldout)],
              "general": [item(t, GENERAL_VOICES[i % 3], "general", i) for i, t in enumerate(general_sents)]}
    audio = work / "data" / "audio"; audio.mkdir(parents=True, exist_ok=True)
    synthesise([it for g in groups.values() for it in g], audio)
    for g in ("train", "general"):
        for it in groups[g]:
            it["path"] = str(audio / f"{it['name']}.flac"); sf.write(it["path"], it["audio"], 16_000, format="FLAC")
    heldout_pairs, ood_pairs = pairs(groups["heldout"], audio), pairs(groups["ood"], audio)
    noisy = noisy_copy(heldout_pairs, audio, NOISY_SNR_DB, a.seed)
    few = groups["train"][:4]  # an artifact needs a train split; the eval-only ones get four clips they are never trained on
    manifests = {"train": (groups["train"], heldout_pairs), "ood": (few, ood_pairs), "general": (groups["general"], few),
                 "noisy": (few, noisy)}
    for key, (train, test) in manifests.items():
        path = work / "data" / f"{ARTIFACTS[key]}.csv"; write_manifest(path, train, test)
        preprocess(artifact_name=ARTIFACTS[key], model_id=str(model), dataset_name=str(path), artifacts_dir=str(work / "artifacts"),
                   if_exists="overwrite", num_proc=2)
    words = lambda rows: sum(len(r["text"].split()) for r in rows)
    facts = {"sentences": {"train": len(train_sents), "heldout": len(heldout), "general": len(general_sents), "pool": pool},
             "clips": {"train": len(groups["train"]), "general": len(groups["general"]), "heldout": len(heldout_pairs), "ood": len(ood_pairs)},
             "words": {"heldout": words(heldout_pairs), "ood": words(ood_pairs), "noisy": words(noisy)},
             "voices": {"train": TRAIN_VOICES, "ood": OOD_VOICE, "general": GENERAL_VOICES}}
    (work / "data" / "facts.json").write_text(json.dumps(facts, indent=1))
    print(json.dumps(facts))


# ---------------------------------------------------------------------------------------------------------------
# Runs

def run(a):
    "One run of the train job, then its saved model (and, once, the base model) scored on the noisy copy."
    from asr_finetuner.evaluate import evaluate
    from asr_finetuner.train import train
    work, model = a.work, build_model(a.work)
    data = work / "data" / f"{ARTIFACTS['train']}.csv"
    steps = a.steps
    params = dict(model_name=a.name, model_id=str(model), dataset_name=str(data), artifact_name=ARTIFACTS["train"],
                  artifacts_dir=str(work / "artifacts"), output_dir=str(work / "runs" / a.name), max_steps=steps,
                  warmup_steps=max(1, steps // 10), train_batch_size=8, eval_batch_size=16,
                  eval_steps=steps // 2, save_steps=steps, logging_steps=1,
                  generation_max_length=128, eval_sets=ARTIFACTS["ood"], resume=False)
    params.update(RUNS[a.name])
    start = time.time()
    m = train(**params)
    seconds = time.time() - start
    scored = {}
    for who, folder in ((a.name, work / "runs" / a.name), ("base", model)):
        out = work / "noisy" / who
        if who == "base" and (out / "metrics.json").is_file(): continue
        e = evaluate(model_id=str(folder), artifact_name=ARTIFACTS["noisy"], artifacts_dir=str(work / "artifacts"),
                     output_dir=str(out), eval_batch_size=16, generation_max_length=128)
        scored[who] = {"wer": e.wer, "wer_normalized": e.wer_normalized, "utterances": e.num_utterances}
    (work / "runs" / f"{a.name}.json").write_text(json.dumps({"seconds": seconds, "noisy": scored, "params": params}, indent=1))
    print(f"{a.name}: {seconds / 60:.1f} min; kept step {m.kept['step']}; warnings {m.warnings}")


# ---------------------------------------------------------------------------------------------------------------
# Report

def pct(x): return "-" if x is None else f"{100 * x:.1f}"


def report(a):
    from asr_finetuner.train_outputs import TrainMetrics
    work = a.work
    facts = json.loads((work / "data" / "facts.json").read_text())
    base_noisy = json.loads((work / "noisy" / "base" / "metrics.json").read_text())
    lines = ["| run | kept step (of) | in-domain WER norm. step 0 -> kept (last) | out-of-domain WER norm. step 0 -> kept (last) "
             "| noisy held-out WER norm. (base) | text on non-speech step 0 -> end | language id. in-domain / out-of-domain step 0 -> end | warnings |",
             "|---|---|---|---|---|---|---|---|"]
    results = {}
    for name in RUNS:
        path = work / "runs" / name / "metrics.json"
        if not path.is_file(): continue
        m = TrainMetrics.read(path); extra = json.loads((work / "runs" / f"{name}.json").read_text())
        ood = m.eval_sets[ARTIFACTS["ood"]]
        c0, c1 = m.checks["step_0"], m.checks["final"]
        o0, o1 = c0["sets"][ARTIFACTS["ood"]], c1["sets"][ARTIFACTS["ood"]]
        noisy = extra["noisy"][name]
        lines.append(f"| {name} | {m.kept['step']} ({m.steps}) | {pct(m.step_0['wer_normalized'])} -> {pct(m.final['wer_normalized'])} "
                     f"({pct(m.last_step['wer_normalized'])}) | {pct(ood['step_0']['wer_normalized'])} -> {pct(ood['final']['wer_normalized'])} "
                     f"({pct(ood['last_step']['wer_normalized'])}) | {pct(noisy['wer_normalized'])} ({pct(base_noisy['wer_normalized'])}) "
                     f"| {pct(c0['hallucination_rate'])} -> {pct(c1['hallucination_rate'])} of {c1['non_speech_clips']} "
                     f"| {pct(c0['language_accuracy'])} / {pct(o0['language_accuracy'])} -> {pct(c1['language_accuracy'])} / {pct(o1['language_accuracy'])} "
                     f"| {'; '.join(m.warnings) or 'none'} |")
        results[name] = {"metrics": m.to_dict(), **extra}
    print(f"Data: {json.dumps(facts)}\n")
    print("\n".join(lines))
    for name, r in results.items():
        print(f"\n{name}: " + ", ".join(f"step {e['step']}: in-domain {pct(e['wer_normalized'])}" for e in r["metrics"]["evaluations"])
              + " | out-of-domain " + ", ".join(f"step {e['step']}: {pct(e['wer_normalized'])}" for e in r["metrics"]["eval_sets"][ARTIFACTS["ood"]]["evaluations"])
              + f" | {r['seconds'] / 60:.1f} min")
    if a.json: Path(a.json).write_text(json.dumps(results, indent=1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("stage", choices=("data", "run", "report"))
    ap.add_argument("--work", type=Path, default=Path("/tmp/asr-guardrails"))
    ap.add_argument("--name", choices=tuple(RUNS), default="default")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    {"data": make_data, "run": run, "report": report}[a.stage](a)


if __name__ == "__main__":
    main()
