"""Benchmark: peak training memory of the published Whisper sizes, measured on CPU, beside the plan's estimate.

Run from the repository root:

    .venv/bin/python bench/memory_bench.py [--sizes base,small,medium,large-v3,large-v3-turbo] [--limit-gb 20] [--out bench/memory_results.json]

Each configuration runs in a fresh process (`common.run_child`): a model of the published size with random weights
(`published_whisper_config`; memory does not depend on the weights' values), full 30 s windows (3000 mel frames),
labels of 128 tokens, and two optimizer steps (the second starts with the optimizer's states allocated, as every
later step of a training does). The large sizes take minutes a step here: they make one step, after the optimizer's
states were allocated by a step on zero gradients (`prime`), before the peak is reset. The steps are run for
real; the figure is the process's peak resident set (`VmHWM`, reset through `/proc/self/clear_refs` once the model is
built) less its resident set before the model existed (after every import), with glibc set to return freed tensors
to the system at once (`MALLOC`), so that it follows the live tensors as a GPU allocator's count does.

Beside each: `asr_finetuner.memory.memory_estimate` for the same model, batch, labels and options (recomputed from a
meta-device model when the tables are printed, so they show the library as it is). Configurations whose estimate is
above `--limit-gb` are not run (the machine has 24 GB): estimated only. bf16 matrix products run about 8x slower than
fp32 on this CPU (no AVX-512 BF16), so bf16 autocast is measured twice only (base at batch 1, and the turbo target).

    .venv/bin/python bench/memory_bench.py --out bench/memory_results.json --markdown   # the tables of MEMORY.md
"""
from __future__ import annotations
import argparse, functools, json, os, sys, tempfile, time
from pathlib import Path

from common import child_env, run_child, write_result

LABELS = 128
# glibc keeps freed blocks below its (growing) mmap threshold in the heap, so the resident set would count memory
# already freed. A fixed 128 KiB threshold maps every tensor of any size apart and unmaps it when freed: the resident
# set then follows the live tensors, as a GPU allocator's count does.
MALLOC = {"MALLOC_MMAP_THRESHOLD_": 131072, "MALLOC_TRIM_THRESHOLD_": 131072}
OPTIONS = {  # option set -> train-job parameters
    "full fp32": dict(optim="adamw_torch"),
    "full bf16": dict(optim="adamw_torch", precision="bf16"),
    "freeze_encoder": dict(optim="adamw_torch", freeze_encoder=True),
    "gradient_checkpointing": dict(optim="adamw_torch", gradient_checkpointing=True),
    "adafactor": dict(optim="adafactor"),
    "adamw_8bit": dict(optim="adamw_8bit"),
    "lora": dict(optim="adamw_torch", lora=True),
    "lora 8-bit": dict(optim="adamw_torch", lora=True, lora_bits=8),
    "lora 4-bit": dict(optim="adamw_torch", lora=True, lora_bits=4),
    "lora 4-bit + GC": dict(optim="adamw_torch", lora=True, lora_bits=4, gradient_checkpointing=True),
    "bf16 + GC": dict(optim="adamw_torch", precision="bf16", gradient_checkpointing=True),
    "bf16 + GC + adafactor": dict(optim="adafactor", precision="bf16", gradient_checkpointing=True),
}


def build(size:str, opts:dict, folder:Path|None):
    "The model as the train job would train it under `opts`."
    import torch
    from transformers import WhisperForConditionalGeneration
    from asr_finetuner.whisper import published_whisper_config
    from asr_finetuner.train import add_lora, quantization_config
    if opts.get("lora_bits"):
        model = WhisperForConditionalGeneration.from_pretrained(folder, quantization_config=quantization_config(opts["lora_bits"], "fp32"),
                                                                device_map={"": "cpu"}, dtype=torch.float32)
    else:
        model = WhisperForConditionalGeneration(published_whisper_config(size))
    if opts.get("freeze_encoder"): model.freeze_encoder()
    if opts.get("gradient_checkpointing"):
        model.config.use_cache = False
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if opts.get("lora"): model = add_lora(model, 32, None, 0.05, ("q_proj", "v_proj"), opts.get("lora_bits"), opts.get("gradient_checkpointing", False))
    return model


def optimizer_for(model, name:str):
    "transformers' optimizer of that name, as the Trainer makes it."
    from transformers import Trainer, TrainingArguments
    cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(TrainingArguments(output_dir=tempfile.mkdtemp(), optim=name, learning_rate=1e-5, use_cpu=True, report_to="none"))
    return cls([p for p in model.parameters() if p.requires_grad], **kwargs)


def prime(model, optimizer):
    "Allocate the optimizer's states with one step on zero gradients, so that a single measured step is a steady-state one."
    import torch
    for p in model.parameters():
        if p.requires_grad: p.grad = torch.zeros_like(p)
    optimizer.step(); optimizer.zero_grad(set_to_none=True)


def steps(model, optimizer, batch:int, bf16:bool, n:int=2):
    import torch
    c = model.config
    feats, labels = torch.randn(batch, c.num_mel_bins, 2 * c.max_source_positions), torch.randint(0, 50257, (batch, LABELS))
    model.train()
    for _ in range(n):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_features=feats, labels=labels).loss
        loss.backward(); optimizer.step(); optimizer.zero_grad(set_to_none=True)


def rss_kb(field:str)->int:
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(field + ":"))


def child(size:str, option:str, batch:int, method:str, folder:str, out:str):
    import torch
    from asr_finetuner.memory import memory_estimate
    torch.manual_seed(0)
    opts = OPTIONS[option]
    import peft, transformers, transformers.trainer  # noqa: F401  (imported before the baseline: code is not what is measured)
    if opts.get("lora_bits") or "8bit" in opts["optim"]: import bitsandbytes  # noqa: F401
    n = 1 if size.startswith("large") else 2
    t0 = time.time()
    base = rss_kb("VmRSS")
    model = build(size, opts, Path(folder)); optimizer = optimizer_for(model, opts["optim"])
    if n == 1: prime(model, optimizer)
    open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to now
    steps(model, optimizer, batch, opts.get("precision") == "bf16", n)
    measured = (rss_kb("VmHWM") - base) * 1024
    est = memory_estimate(model, batch, LABELS, opts["optim"], opts.get("precision", "fp32"), opts.get("gradient_checkpointing", False),
                          opts.get("freeze_encoder", False))
    write_result(out, {"measured_bytes": int(measured), "estimate": est, "seconds": time.time() - t0, "steps": n})


@functools.lru_cache(maxsize=None)
def estimate_only(size:str, option:str, batch:int)->dict:
    "The estimate, from a model on the meta device (quantised weights counted at their stored size)."
    import torch
    from transformers import WhisperForConditionalGeneration
    from asr_finetuner.memory import memory_estimate
    from asr_finetuner.whisper import published_whisper_config
    opts = OPTIONS[option]
    with torch.device("meta"): model = WhisperForConditionalGeneration(published_whisper_config(size))
    if opts.get("freeze_encoder"): model.freeze_encoder()
    return memory_estimate(model, batch, LABELS, opts["optim"], opts.get("precision", "fp32"), opts.get("gradient_checkpointing", False),
                           opts.get("freeze_encoder", False), lora=32 if opts.get("lora") else 0, lora_bits=opts.get("lora_bits"))


# (size, option, batch, method): what the table runs; the rest of the fit table is estimated
PLAN = [
    ("base", "full fp32", 1, "rss"), ("base", "full bf16", 1, "rss"),
    *[("base", o, 4, "rss") for o in ("full fp32", "freeze_encoder", "gradient_checkpointing", "adafactor", "adamw_8bit", "lora",
                                      "lora 8-bit", "lora 4-bit")],
    ("small", "full fp32", 4, "rss"), ("small", "lora 4-bit", 4, "rss"),
    ("large-v3", "lora 4-bit + GC", 4, "rss"),  # the targets: large-v3 at batch 4 and turbo bf16 + GC at batch 2, in 20 GB
    ("large-v3-turbo", "gradient_checkpointing", 2, "rss"), ("large-v3-turbo", "bf16 + GC", 2, "rss"),
]


FIT_OPTIONS = {  # option set -> how `estimate_only` is asked
    "full bf16": "full bf16", "bf16 + GC": "bf16 + GC", "bf16 + GC + adafactor": "bf16 + GC + adafactor",
    "LoRA bf16 + GC": "lora bf16 + GC", "LoRA 4-bit + GC (fp32 compute)": "lora 4-bit + GC",
}
OPTIONS["lora bf16 + GC"] = dict(optim="adamw_torch", lora=True, precision="bf16", gradient_checkpointing=True)
GPUS = (16, 24, 48, 80)
CUDA_OVERHEAD_GB = 1.0  # the CUDA context and the allocator's slack, kept free


def largest_batch(size:str, option:str, gpu_gb:float, most:int=64)->int:
    "The largest batch (at most `most`) whose estimate fits `gpu_gb` less `CUDA_OVERHEAD_GB`; 0 if none. The estimate is linear in the batch."
    one, two = (estimate_only(size, option, b)["total"] for b in (1, 2))
    per_row, fixed = two - one, 2 * one - two
    return max(0, min(most, int(((gpu_gb - CUDA_OVERHEAD_GB) * 2**30 - fixed) // per_row)))


def markdown(rows:list)->str:
    "The measured table and the fit table, as bench/MEMORY.md shows them."
    out = ["| size | options | batch | measured GB | estimate GB | estimate / measured | seconds |", "|---|---|---|---|---|---|---|"]
    for r in rows:  # the estimate as the library makes it now (a meta-device model), beside what was measured
        e = estimate_only(r["size"], r["option"], r["batch"])["total"] / 2**30
        if "skipped" in r: out.append(f"| {r['size']} | {r['option']} | {r['batch']} | not run ({r['skipped']}) | {e:.2f} | | |")
        else: out.append(f"| {r['size']} | {r['option']} | {r['batch']} | {r['measured_gb']:.2f} | {e:.2f} | {e / r['measured_gb']:.2f} | {r['seconds']:.0f} |")
    out += ["", "| size | options | " + " | ".join(f"{g} GB" for g in GPUS) + " |", "|---|---|" + "---|" * len(GPUS)]
    for size in ("base", "small", "medium", "large-v3", "large-v3-turbo"):
        for name, option in FIT_OPTIONS.items():
            out.append(f"| {size} | {name} | " + " | ".join(str(largest_batch(size, option, g) or "-") for g in GPUS) + " |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", nargs=6)
    ap.add_argument("--sizes", default="base,small,medium,large-v3,large-v3-turbo")
    ap.add_argument("--limit-gb", type=float, default=20)
    ap.add_argument("--out", default="bench/memory_results.json")
    ap.add_argument("--work", default=None)
    ap.add_argument("--markdown", action="store_true", help="print the tables of --out's results and the fit table, and stop")
    a = ap.parse_args()
    if a.markdown: return print(markdown(json.loads(Path(a.out).read_text())))
    if a.child: return child(a.child[0], a.child[1], int(a.child[2]), a.child[3], a.child[4], a.child[5])
    import torch
    from transformers import WhisperForConditionalGeneration
    from asr_finetuner.whisper import published_whisper_config
    work = Path(a.work or tempfile.mkdtemp(prefix="memory-bench-")); work.mkdir(parents=True, exist_ok=True)
    sizes, rows = a.sizes.split(","), []
    done = {(r["size"], r["option"], r["batch"], r["method"]): r for r in json.loads(Path(a.out).read_text())} if Path(a.out).is_file() else {}
    for size, option, batch, method in PLAN:
        if size not in sizes: continue
        key = (size, option, batch, method)
        if key in done: rows.append(done[key]); continue
        est = estimate_only(size, option, batch)
        row = {"size": size, "option": option, "batch": batch, "method": method, "estimate": est}
        if method == "rss" and est["total"] / 2**30 > a.limit_gb:
            row["skipped"] = f"estimate above {a.limit_gb} GB"
        else:
            folder = work / size
            if OPTIONS[option].get("lora_bits") and not (folder / "config.json").is_file():
                torch.manual_seed(0)
                WhisperForConditionalGeneration(published_whisper_config(size)).to(torch.bfloat16).save_pretrained(folder)
            r = run_child([sys.executable, __file__, "--child", size, option, batch, method, folder, work / "r.json"], work / "r.json",
                          work / "log.txt", child_env(OMP_NUM_THREADS=os.cpu_count(), **MALLOC))
            row.update(measured_gb=r["measured_bytes"] / 2**30, child_estimate=r["estimate"], seconds=round(r["seconds"], 1))
            row["estimate_over_measured"] = round(r["estimate"]["total"] / r["measured_bytes"], 3)
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k not in ("estimate", "child_estimate")}), flush=True)
        Path(a.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
