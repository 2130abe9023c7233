"""Benchmark: our train job's data path against the published Whisper fine-tuning recipe, in `Seq2SeqTrainer`.

Run from the repository root:

    .venv/bin/python bench/train_bench.py [--d-model 128 --layers 2] [--batch 4] [--warmup 2 --steps 5] [--repeat 2] [--eval-clips 8]

Both sides train the same random Whisper (real 30 s window: 3000 input frames), built once with
`build_tiny_whisper`, on the same rows in the same order, with the same `Seq2SeqTrainingArguments`
(`asr_finetuner.train.training_arguments`, i.e. what the train job uses; checkpointing and in-training evaluation
switched off so that train and evaluation are timed apart), the same `compute_metrics`, the same batch size and
number of steps. Only the data path differs:

- ours: the artifact of `asr_finetuner.preprocess.preprocess` (float16 frames, unpadded, numpy format, as
  `load_training_data` returns it) and `WhisperCollator` (pad_to_window per row);
- reference: the HF blog "Fine-Tune Whisper For Multilingual ASR" (https://huggingface.co/blog/fine-tune-whisper):
  a dataset of float32 `input_features` padded to 30 s made by a per-example `map` with
  `feature_extractor(audio).input_features[0]` and `tokenizer(text).input_ids`, no format set (python lists), and
  the blog's `DataCollatorSpeechSeq2SeqWithPadding`.

Each trial (one side, one repetition) runs in a fresh subprocess (`common.run_child`), so that its peak memory (the
resident set of its process tree, polled) is its own;
trials alternate ours, reference, ours, reference, ... Each trial: evaluation of the untrained model with
`trainer.predict` (predict_with_generate, generation_max_length 225, as the train job's final evaluation), then
`trainer.train()` for warmup + steps steps; samples/s counts the steps after the warm-up only. The data cost alone
(dataset fetch + collate of a batch, outside the trainer) is timed too.
"""
from __future__ import annotations
import argparse, json, os, statistics, sys, tempfile, time
from pathlib import Path

from common import SAMPLE, DataCollatorSpeechSeq2SeqWithPadding, child_env, make_reference_split, run_child, write_result


# ---------------------------------------------------------------------------------------------------------------
# Setup (parent): model, our artifact, the reference dataset.

def setup(tmp:Path, a)->dict:
    from asr_finetuner.whisper import build_tiny_whisper, load_processor
    from asr_finetuner.preprocess import preprocess
    from asr_finetuner.artifacts import load_artifact
    from asr_finetuner.train import load_training_data
    model_dir = tmp / "model"
    model, _ = build_tiny_whisper(model_dir, language="Italian", window_seconds=30, d_model=a.d_model,
                                  layers=a.layers, heads=a.heads)
    n_params = sum(p.numel() for p in model.parameters())
    del model
    n_train = a.batch * (a.warmup + a.steps)
    preprocess(artifact_name="bench", model_id=str(model_dir), dataset_name=str(SAMPLE), artifacts_dir=str(tmp / "artifacts"),
               language="Italian", max_eval_samples=a.eval_clips, num_proc=1, if_exists="overwrite")
    cfg = _cfg(tmp, model_dir, a, "setup")
    dd, manifest = load_artifact("bench", str(tmp / "artifacts"))
    train_ds, eval_ds, _ = load_training_data(cfg, dd)
    processor = load_processor(str(model_dir))
    t = time.time()
    ref = {}
    for split, ds in (("train", train_ds), ("eval", eval_ds)):
        rows = ds[:n_train] if split == "train" else ds[:]
        r = make_reference_split(rows, processor, str(tmp / "reference" / split))
        same = [list(x) for x in r["labels"]] == [list(map(int, l)) for l in rows["labels"]]
        ref[split] = {"rows": len(r), "labels_equal_ours": same}
    ref_seconds = time.time() - t
    return {"model_dir": str(model_dir), "params": n_params, "n_train": n_train, "reference": ref,
            "reference_prep_s": round(ref_seconds, 1), "eval_audio_s": float(sum(eval_ds["duration"]))}


def _cfg(tmp, model_dir, a, name):
    from asr_finetuner.config import make_config, TrainConfig
    return make_config(TrainConfig, model_name=f"bench-{name}", model_id=str(model_dir), dataset_name=str(SAMPLE),
                       artifact_name="bench", artifacts_dir=str(tmp / "artifacts"), output_dir=str(tmp / "out" / name),
                       max_steps=a.warmup + a.steps, train_batch_size=a.batch, eval_batch_size=a.eval_batch,
                       max_train_samples=a.batch * (a.warmup + a.steps), max_eval_samples=a.eval_clips,
                       warmup_steps=0, logging_steps=10_000, eval_steps=10_000, save_steps=10_000, resume=False)


# ---------------------------------------------------------------------------------------------------------------
# One trial (child process).

def trial(side:str, tmp:Path, a)->dict:
    import numpy as np, torch
    from datasets import load_from_disk
    from transformers import Seq2SeqTrainer, TrainerCallback
    from transformers.trainer_utils import IntervalStrategy, SaveStrategy
    from asr_finetuner.artifacts import load_artifact
    from asr_finetuner.train import (WhisperCollator, load_training_data, make_compute_metrics, prepare_model,
                                     training_arguments, check_artifact_fits)
    from asr_finetuner.whisper import load_processor
    torch.set_num_threads(a.threads)
    t_start = time.time()
    model_dir = tmp / "model"
    cfg = _cfg(tmp, model_dir, a, side)
    processor = load_processor(str(model_dir))
    model = prepare_model(cfg)
    args = training_arguments(cfg, cfg.resolved_output_dir, "fp32", resume=False)
    # time train and evaluation apart: no evaluation at start or during training, no checkpoint
    args.eval_on_start, args.eval_strategy, args.save_strategy = False, IntervalStrategy.NO, SaveStrategy.NO
    args.disable_tqdm = True
    if side == "ours":
        dd, manifest = load_artifact("bench", str(tmp / "artifacts"))
        check_artifact_fits(manifest, cfg, model.config, processor.tokenizer)
        train_ds, eval_ds, _ = load_training_data(cfg, dd)
        collator = WhisperCollator(2 * model.config.max_source_positions, model.config.decoder_start_token_id)
    else:  # the blog: plain datasets (python lists), the blog's collator
        train_ds = load_from_disk(str(tmp / "reference" / "train"))
        eval_ds = load_from_disk(str(tmp / "reference" / "eval"))
        collator = DataCollatorSpeechSeq2SeqWithPadding(processor, model.config.decoder_start_token_id)
    audio_s = float(np.sum(eval_ds["duration"]))

    # data cost alone: fetch a batch of rows the way the DataLoader does (__getitems__) and collate it
    data_times = []
    for i in range(a.data_batches):
        idx = [(i * a.batch + j) % len(train_ds) for j in range(a.batch)]
        t = time.perf_counter()
        b = collator(train_ds.__getitems__(idx))
        data_times.append(time.perf_counter() - t)
    assert b["input_features"].shape[-1] == 2 * model.config.max_source_positions and b["input_features"].dtype == torch.float32

    class Times(TrainerCallback):
        stamps = []
        def on_step_end(self, args, state, control, **kw): self.stamps.append(time.perf_counter())
    timer = Times()
    trainer = Seq2SeqTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds, data_collator=collator,
                             processing_class=processor, compute_metrics=make_compute_metrics(processor.tokenizer),
                             callbacks=[timer])
    # evaluation of the untrained model (same weights on both sides), as the train job's final trainer.predict
    t = time.perf_counter()
    pred = trainer.predict(eval_ds, metric_key_prefix="final")
    eval_s = time.perf_counter() - t
    gen_tokens = int(((pred.predictions >= 0) & (pred.predictions != processor.tokenizer.pad_token_id)).sum())
    # training
    t0 = time.perf_counter()
    result = trainer.train()
    st = timer.stamps
    measured = st[-1] - st[a.warmup - 1] if a.warmup > 0 else st[-1] - t0
    # duration of each step after the warm-up (a zero gap, seen once with --warmup 1, is skipped)
    steps_after = [y - x for x, y in zip(st[:-1], st)][max(a.warmup - 1, 0):]
    steps_after = [d for d in steps_after if d > 0] or [measured / a.steps]
    return {"side": side, "train_samples_per_s": a.steps * a.batch / measured, "step_s": measured / a.steps,
            "best_step_s": min(steps_after), "best_samples_per_s": a.batch / min(steps_after),
            "step_times": [round(y - x, 3) for x, y in zip([t0] + st[:-1], st)],
            "data_s_per_batch": statistics.median(data_times), "eval_s": eval_s, "eval_audio_s": audio_s,
            "eval_rtf": eval_s / audio_s, "eval_wer": pred.metrics.get("final_wer"), "generated_tokens": gen_tokens,
            "train_loss": result.metrics.get("train_loss"),
            "trial_wall_s": time.time() - t_start}


def profile_trial(side, tmp, a, out):
    import cProfile, pstats
    pr = cProfile.Profile(); pr.enable()
    r = trial(side, tmp, a)
    pr.disable()
    pstats.Stats(pr, stream=open(out, "w")).sort_stats("cumulative").print_stats(40)
    return r


# ---------------------------------------------------------------------------------------------------------------

def main():
    p = argparse.ArgumentParser()
    p.add_argument("--d-model", type=int, default=128); p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--batch", type=int, default=4); p.add_argument("--eval-batch", type=int, default=8)
    p.add_argument("--warmup", type=int, default=2); p.add_argument("--steps", type=int, default=5)
    p.add_argument("--eval-clips", type=int, default=8); p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--data-batches", type=int, default=5); p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json"); p.add_argument("--profile", choices=["ours", "reference"])
    p.add_argument("--tmp"); p.add_argument("--worker", choices=["ours", "reference"]); p.add_argument("--result")
    a = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if a.worker:
        tmp = Path(a.tmp)
        r = profile_trial(a.worker, tmp, a, tmp / f"profile_{a.worker}.txt") if a.profile else trial(a.worker, tmp, a)
        write_result(a.result, r)
        return
    with tempfile.TemporaryDirectory(prefix="train_bench_") as d:
        tmp = Path(d)
        env = child_env(HF_DATASETS_CACHE=tmp / "hf_cache")
        os.environ.update(env)
        t = time.time()
        info = setup(tmp, a)
        print(f"setup {time.time() - t:.1f} s: {json.dumps(info)}", flush=True)
        passthru = [f"--{k.replace('_', '-')}={v}" for k, v in vars(a).items()
                    if k not in ("json", "profile", "tmp", "worker", "result") and v is not None]
        runs = []
        for i in range(a.repeat):
            for side in ("ours", "reference"):
                load = os.getloadavg()[0]
                r = run_child([sys.executable, __file__, "--worker", side, "--tmp", tmp, "--result", tmp / f"result-{side}.json", *passthru],
                              tmp / f"result-{side}.json", tmp / f"log-{side}-{i}.txt", env)
                r["load_before"] = load; r["rep"] = i
                runs.append(r)
                print(f"rep {i} {side:9s} load {load:.2f}: {r['train_samples_per_s']:.3f} samples/s "
                      f"(step {r['step_s']:.3f} s, data {r['data_s_per_batch'] * 1000:.1f} ms/batch), eval {r['eval_s']:.2f} s "
                      f"RTF {r['eval_rtf']:.4f} ({r['generated_tokens']} tokens), peak RSS {r['peak_rss_mb']:.0f} MB, "
                      f"steps {r['step_times']}", flush=True)
        if a.profile:
            run_child([sys.executable, __file__, "--worker", a.profile, "--profile", a.profile, "--tmp", tmp,
                       "--result", tmp / "result-profile.json", *passthru], tmp / "result-profile.json", tmp / "log-profile.txt", env)
            prof = (tmp / f"profile_{a.profile}.txt").read_text(); print(prof)
        summary = {}
        for key in ("train_samples_per_s", "step_s", "best_samples_per_s", "data_s_per_batch", "eval_rtf", "peak_rss_mb"):
            vals = {s: [r[key] for r in runs if r["side"] == s] for s in ("ours", "reference")}
            med = {s: statistics.median(v) for s, v in vals.items()}
            summary[key] = {"ours": med["ours"], "reference": med["reference"], "ratio": med["ours"] / med["reference"],
                            "ours_all": vals["ours"], "reference_all": vals["reference"],
                            "per_rep_ratio": [o / r for o, r in zip(vals["ours"], vals["reference"])]}
        print(f"\nmodel d_model={a.d_model} layers={a.layers} ({info['params'] / 1e6:.1f} M params), batch {a.batch}, "
              f"{a.warmup}+{a.steps} steps, eval {a.eval_clips} clips ({info['eval_audio_s']:.1f} s audio), repeat {a.repeat}")
        print(f"{'metric':22s} {'ours':>10s} {'reference':>10s} {'ours/ref':>9s}  per-rep ratios")
        for k, v in summary.items():
            print(f"{k:22s} {v['ours']:10.4f} {v['reference']:10.4f} {v['ratio']:9.3f}  "
                  + " ".join(f"{x:.3f}" for x in v["per_rep_ratio"]))
        if a.json: Path(a.json).write_text(json.dumps({"args": vars(a), "setup": info, "runs": runs, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
