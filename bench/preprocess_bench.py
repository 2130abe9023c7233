"""Benchmark: our preprocess job against the published Whisper fine-tuning recipe.

Run from the repository root:

    .venv/bin/python bench/preprocess_bench.py [--scale 10] [--clip-seconds 5] [--num-proc 2]

The reference is the data preparation of the Hugging Face blog post "Fine-Tune Whisper For Multilingual ASR
with Transformers" (https://huggingface.co/blog/fine-tune-whisper): a per-example `Dataset.map(prepare_dataset,
num_proc=...)` whose function decodes the clip, calls `feature_extractor(audio, sampling_rate=16000)
.input_features[0]` (every clip padded to Whisper's 30 s window, float32) and `tokenizer(text).input_ids`,
followed here by `save_to_disk`. The blog decodes through the `Audio` feature; datasets 5 decodes with
torchcodec, which is not installed, so both sides decode with soundfile + soxr (the same decoder), and the
comparison is about everything else.

Both jobs read the same local dataset (FLAC clips and a manifest, built in a temporary folder from the bundled
Italian sample clips), use the same processor (a model folder from `build_tiny_whisper(window_seconds=30)`) and
the same number of processes, in the same run. Each job runs in a fresh subprocess, with its own empty
HF_DATASETS_CACHE and HF_HUB_OFFLINE=1; the parent polls the resident memory of the subprocess and of all its
descendants (the `map` workers) and keeps the peak of the sum.
"""
from __future__ import annotations
import argparse, csv, json, os, resource, shutil, statistics, sys, tempfile, time
from pathlib import Path

from common import REPO, SAMPLE, run_child, write_result
RATE = 16_000
TARGETS = {"throughput": 5.0, "bytes": 1 / 7, "memory": 1.2}
TOLERANCE = 4e-3  # float16 rounding of log-mel values within [-1.5, 2] (as in tests/test_preprocess.py)


# ---------------------------------------------------------------------------------------------------------------
# The two jobs. Each runs in its own subprocess (`--worker ours|reference --spec spec.json`).

def run_ours(spec:dict)->dict:
    "Our preprocess job on the manifest; the path of the artifact."
    from asr_finetuner.preprocess import preprocess
    manifest = preprocess(artifact_name="bench", model_id=spec["model"], dataset_name=spec["manifest"],
                          artifacts_dir=spec["out"], num_proc=spec["num_proc"], language="Italian",
                          if_exists="overwrite")
    return {"output": manifest.path, "rows": {s: r["rows_kept"] for s, r in manifest.splits.items()}}

def run_reference(spec:dict)->dict:
    "The blog's recipe: per-example map that decodes, pads to 30 s (float32) and tokenizes; then save_to_disk."
    import numpy as np, soundfile as sf, soxr
    from datasets import Audio, Value, load_dataset
    from transformers import WhisperFeatureExtractor, WhisperTokenizer
    feature_extractor = WhisperFeatureExtractor.from_pretrained(spec["model"])
    tokenizer = WhisperTokenizer.from_pretrained(spec["model"], language="Italian", task="transcribe")
    ds = load_dataset("csv", data_files=spec["split_csvs"])            # train + validation, like the blog's two splits
    # the blog: cast_column("audio", Audio(sampling_rate=16000)), decoded by datasets; here undecoded paths
    # (the CSV loader gives large_string, which Audio cannot cast from: string first)
    ds = ds.cast_column("audio", Value("string")).cast_column("audio", Audio(decode=False))

    def decode(path):                                                   # what Audio(sampling_rate=16000) does, via soundfile
        samples, rate = sf.read(path, dtype="float32", always_2d=True)
        samples = samples.mean(axis=1)
        return soxr.resample(samples, rate, 16000).astype(np.float32) if rate != 16000 else samples

    def prepare_dataset(batch):                                         # the blog's function, verbatim apart from decode()
        audio = decode(batch["audio"]["path"])
        batch["input_features"] = feature_extractor(audio, sampling_rate=16000).input_features[0]
        batch["labels"] = tokenizer(batch["text"]).input_ids
        return batch

    ds = ds.map(prepare_dataset, remove_columns=ds.column_names["train"], num_proc=spec["num_proc"])
    ds.save_to_disk(spec["out"])
    return {"output": spec["out"], "rows": {s: len(d) for s, d in ds.items()},
            "features": str(ds["train"].features["input_features"])}

def import_modules(side:str):
    "Import what the job needs, so that its timing leaves out the imports (torch, transformers, datasets)."
    if side == "ours": import asr_finetuner.preprocess  # noqa: F401
    else:
        import numpy, soundfile, soxr, datasets, transformers  # noqa: F401
        transformers.WhisperFeatureExtractor, transformers.WhisperTokenizer  # lazy modules: load them now

def worker(side:str, spec_path:str):
    spec = json.loads(Path(spec_path).read_text())
    import_modules(side)
    own0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    result = (run_ours if side == "ours" else run_reference)(spec)
    result["job_seconds"] = time.perf_counter() - t0
    own1, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU of the job: this process after the imports, and the map workers (forked during the job, reaped by now)
    result["job_cpu_seconds"] = (own1.ru_utime - own0.ru_utime + own1.ru_stime - own0.ru_stime
                                 + kids.ru_utime + kids.ru_stime)
    write_result(spec["result"], result)


# ---------------------------------------------------------------------------------------------------------------
# The data: ~clip_seconds clips made of consecutive sample clips (and their transcripts), as FLAC.

def read_split(split:str)->list:
    import soundfile as sf
    with open(SAMPLE / split / "metadata.csv", encoding="utf-8") as f: rows = list(csv.DictReader(f))
    out = []
    for r in rows:
        x, rate = sf.read(SAMPLE / split / r["file_name"], dtype="float32")
        assert rate == RATE and x.ndim == 1, (r["file_name"], rate, x.shape)
        out.append((x, r["transcription"]))
    return out

def make_clips(source:list, n:int, clip_seconds:float)->list:
    "`n` (samples, text) clips, each made of consecutive source clips (cycling) whose length is closest to clip_seconds."
    import numpy as np
    if clip_seconds <= 0: return [source[i % len(source)] for i in range(n)]
    gap = np.zeros(int(0.15 * RATE), np.float32)
    clips, i = [], 0
    while len(clips) < n:
        parts, texts, length = [], [], 0
        while True:
            x, t = source[i % len(source)]
            # add the next clip while that brings the total closer to clip_seconds (always take one)
            if parts and length + (len(x) + len(gap)) / 2 > clip_seconds * RATE: break
            parts += [gap, x] if parts else [x]; texts.append(t); length += len(x) + (len(gap) if len(parts) > 1 else 0)
            i += 1
        clips.append((np.concatenate(parts), " ".join(texts)))
    return clips

def build_data(root:Path, scales:list, n_train:int, n_eval:int, clip_seconds:float)->dict:
    "For each scale: a folder of FLAC files, a manifest (path,text,split) for ours and one CSV per split for the reference."
    import soundfile as sf
    train = make_clips(read_split("train"), n_train, clip_seconds)
    evals = make_clips(read_split("validation"), n_eval, clip_seconds)
    base = root / "base"; base.mkdir(parents=True)
    originals = []
    for split, clips in (("train", train), ("validation", evals)):
        for k, (x, text) in enumerate(clips):
            p = base / f"{split}_{k:05d}.flac"
            sf.write(p, x, RATE, format="FLAC", subtype="PCM_16")
            originals.append((p, text, split, len(x) / RATE))
    data = {}
    for s in scales:
        folder = root / f"data_{s}x"; (folder / "clips").mkdir(parents=True)
        rows = []
        for rep in range(s):  # the train clips `s` times under new names (real copies); the eval clips once
            for p, text, split, d in originals:
                if split != "train" and rep: continue
                q = folder / "clips" / f"r{rep:02d}_{p.name}"
                shutil.copyfile(p, q)
                rows.append({"path": str(q), "text": text, "split": split, "duration": d})
        with open(folder / "manifest.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=["path", "text", "split"]); w.writeheader()
            w.writerows({k: r[k] for k in ("path", "text", "split")} for r in rows)
        csvs = {}
        for split in ("train", "validation"):
            csvs[split] = str(folder / f"{split}.csv")
            with open(csvs[split], "w", newline="", encoding="utf-8") as f:
                w = csv.DictWriter(f, fieldnames=["audio", "text"]); w.writeheader()
                w.writerows({"audio": r["path"], "text": r["text"]} for r in rows if r["split"] == split)
        data[s] = {"manifest": str(folder / "manifest.csv"), "split_csvs": csvs, "rows": rows,
                   "clips": {sp: sum(r["split"] == sp for r in rows) for sp in ("train", "validation")},
                   "audio_seconds": sum(r["duration"] for r in rows)}
    return data


# ---------------------------------------------------------------------------------------------------------------
# Running a job in a fresh subprocess and measuring it.

def measure(side:str, spec:dict, env:dict, log:Path)->dict:
    "Run one job in a fresh, measured subprocess (`common.run_child`): its result, wall and CPU time, the peak RSS of its process tree."
    spec_path = Path(spec["result"]).with_suffix(".spec.json")
    spec_path.write_text(json.dumps(spec))
    os.sync()  # no dirty pages left over from the previous run (not timed)
    load_before = os.getloadavg()[0]
    # cpu_seconds: the job and its map workers (reaped by the job), imports included
    result = run_child([sys.executable, __file__, "--worker", side, "--spec", spec_path], Path(spec["result"]), log, env)
    out = Path(result["output"])
    result.update(peak_rss=result["peak_rss_mb"] * 2**20, process_seconds=result["wall_seconds"], load_before=load_before,
                  arrow_bytes=sum(f.stat().st_size for f in out.rglob("*.arrow")),
                  cache_arrow_bytes=sum(f.stat().st_size for f in Path(env["HF_DATASETS_CACHE"]).rglob("*.arrow")))
    return result


# ---------------------------------------------------------------------------------------------------------------
# Checks and report.

def check_features(ours_path:str, ref_path:str, rows:list, n:int)->dict:
    "Max abs difference between our frames rebuilt with pad_to_window and the reference's features, on n train clips."
    import numpy as np, datasets
    from asr_finetuner.audio import pad_to_window
    ours = datasets.load_from_disk(ours_path)["train"].with_format("numpy")
    ref = datasets.load_from_disk(ref_path)["train"].with_format("numpy")
    train_rows = [r for r in rows if r["split"] == "train"]
    idx = sorted({round(k * (len(train_rows) - 1) / max(n - 1, 1)) for k in range(n)})
    diffs, labels_equal = [], True
    for i in idx:
        o, r = ours[i], ref[i]
        assert o["source"] == train_rows[i]["path"], (o["source"], train_rows[i]["path"])
        frames = np.asarray(o["log_mel_frames"], dtype=np.float16)
        feats = np.asarray(r["input_features"], dtype=np.float32)
        diffs.append(float(np.abs(pad_to_window(frames, feats.shape[1]) - feats).max()))
        labels_equal &= list(map(int, o["labels"])) == list(map(int, r["labels"]))
    return {"clips": [train_rows[i]["path"].rsplit("/", 1)[-1] for i in idx], "max_abs_diff": max(diffs),
            "per_clip": diffs, "labels_equal": labels_equal}

def fmt_bytes(b:float)->str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if b < 1024 or unit == "TB": return f"{b:.1f} {unit}" if unit != "B" else f"{b:.0f} B"
        b /= 1024

def report(results:dict, data:dict, check:dict, args, notes:list)->dict:
    print("\n" + "=" * 110)
    print(f"Preprocess benchmark: num_proc={args.num_proc}, clips ~{args.clip_seconds or 'raw ~2.1'} s, "
          f"{os.cpu_count()} CPU cores, no GPU")
    head = f"{'scale':>5} {'job':>9} {'clips':>6} {'audio min':>9} {'runs':>4} {'wall s':>7} {'proc s':>7} {'job cpu s':>9} " \
           f"{'audio s/s':>9} {'arrow bytes':>11} {'bytes/audio h':>13} {'peak RSS tree':>13}"
    print(head); print("-" * len(head))
    for (scale, side), r in results.items():
        d = data[scale]; hours = d["audio_seconds"] / 3600
        r["throughput"] = d["audio_seconds"] / r["job_seconds"]; r["bytes_per_hour"] = r["arrow_bytes"] / hours
        print(f"{str(scale) + 'x':>5} {side:>9} {sum(d['clips'].values()):>6} {d['audio_seconds'] / 60:>9.1f} "
              f"{len(r['all_job_seconds']):>4} {r['job_seconds']:>7.1f} {r['process_seconds']:>7.1f} {r['job_cpu_seconds']:>9.1f} "
              f"{r['throughput']:>9.1f} {fmt_bytes(r['arrow_bytes']):>11} {fmt_bytes(r['bytes_per_hour']):>13} "
              f"{fmt_bytes(r['peak_rss']):>13}")
    print("wall s: median over the runs of the job's time, from loading the processor to the saved dataset (imports excluded).\n"
          "proc s: the whole subprocess (interpreter start and imports included). job cpu s: user + system CPU of the job\n"
          "(same span as wall s) and its map workers, median. audio s/s = audio seconds / wall s. arrow bytes: the .arrow\n"
          "files of the saved output (train + eval). peak RSS tree: largest sum of RSS over the job's process and its workers.")
    print("\nTargets")
    verdicts = {}
    for scale in sorted({s for s, _ in results}):
        if (scale, "reference") not in results: continue
        o, r = results[scale, "ours"], results[scale, "reference"]
        t, b = o["throughput"] / r["throughput"], o["bytes_per_hour"] / r["bytes_per_hour"]
        c = r["job_cpu_seconds"] / o["job_cpu_seconds"]
        verdicts[f"throughput {scale}x"] = t >= TARGETS["throughput"]
        verdicts[f"bytes {scale}x"] = b <= TARGETS["bytes"]
        print(f"  {scale:>2}x throughput ours/reference = {t:6.2f}x   (target >= {TARGETS['throughput']:.0f}x)   "
              f"{'MET' if t >= TARGETS['throughput'] else 'NOT MET'}   [job CPU seconds reference/ours: {c:.2f}x]")
        print(f"  {scale:>2}x bytes per audio hour ours/reference = 1/{1 / b:.1f}   (target <= 1/7)   "
              f"{'MET' if b <= TARGETS['bytes'] else 'NOT MET'}")
    scales = sorted({s for s, side in results if side == "ours"})
    if len(scales) > 1:
        m = results[scales[-1], "ours"]["peak_rss"] / results[scales[0], "ours"]["peak_rss"]
        verdicts["memory"] = m <= TARGETS["memory"]
        print(f"  our peak RSS {scales[-1]}x / {scales[0]}x = {m:.2f}   (target <= {TARGETS['memory']})   "
              f"{'MET' if m <= TARGETS['memory'] else 'NOT MET'}")
    if check:
        ok = check["max_abs_diff"] <= TOLERANCE
        verdicts["features"] = ok
        print(f"  features: pad_to_window(ours) vs reference on {len(check['clips'])} clips, max abs diff = "
              f"{check['max_abs_diff']:.2e}   (tolerance {TOLERANCE:g})   {'OK' if ok else 'MISMATCH'}; "
              f"labels equal: {check['labels_equal']}")
    for n in notes: print("  note:", n)
    return verdicts


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=int, default=10, help="the larger run is this many times the 1x data (default 10)")
    ap.add_argument("--clip-seconds", type=float, default=5.0, help="clip length; 0: the raw ~2.1 s sample clips")
    ap.add_argument("--num-proc", type=int, default=2, help="processes for both jobs (default 2)")
    ap.add_argument("--train-clips", type=int, default=240, help="train clips at 1x (default 240)")
    ap.add_argument("--eval-clips", type=int, default=16, help="eval clips, the same at every scale (default 16)")
    ap.add_argument("--check-clips", type=int, default=5, help="clips compared feature by feature (default 5)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each job at 1x (median wall time, largest peak; default 3)")
    ap.add_argument("--repeat-at-scale", type=int, default=1, help="runs of each job at the larger scale (default 1)")
    ap.add_argument("--no-reference-at-scale", action="store_true", help="run the reference at 1x only (faster)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (printed)")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    ap.add_argument("--worker", choices=["ours", "reference"], help=argparse.SUPPRESS)
    ap.add_argument("--spec", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker: return worker(args.worker, args.spec)

    start = time.perf_counter()
    load = os.getloadavg()[0]
    if load > 0.5:
        print(f"warning: load average {load:.1f} on {os.cpu_count()} cores: other work on the machine slows the jobs and makes "
              "the wall times noisy (CPU times are less affected)", flush=True)
    root = Path(tempfile.mkdtemp(prefix="asr-preprocess-bench-"))
    base_env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_CACHE": str(root / "hf_cache"),
                "HF_HOME": str(root / "hf_home"), "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
                "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(REPO)}
    os.environ.update({k: base_env[k] for k in ("HF_HUB_OFFLINE", "HF_DATASETS_CACHE", "HF_HOME")})
    notes = []
    try:
        from asr_finetuner.whisper import build_tiny_whisper
        model = root / "model"
        build_tiny_whisper(model, window_seconds=30)
        scales = [1] + ([args.scale] if args.scale > 1 else [])
        data = build_data(root, scales, args.train_clips, args.eval_clips, args.clip_seconds)
        print(f"data in {root}: " + ", ".join(f"{s}x {sum(d['clips'].values())} clips ({d['audio_seconds'] / 60:.1f} min)"
                                             for s, d in data.items()) + f"; built in {time.perf_counter() - start:.0f} s",
              flush=True)
        results, check = {}, None
        for scale in scales:
            sides = ["ours", "reference"] if scale == 1 or not args.no_reference_at_scale else ["ours"]
            runs = {side: [] for side in sides}
            for k in range(args.repeat if scale == 1 else args.repeat_at_scale):
                for side in sides:  # the two jobs alternate, so that busy spells of the machine hit both
                    tag = f"{side}_{scale}x_{k}"
                    env = {**base_env, "HF_DATASETS_CACHE": str(root / f"cache_{tag}")}  # fresh: nothing cached
                    spec = {"model": str(model), "manifest": data[scale]["manifest"], "split_csvs": data[scale]["split_csvs"],
                            "out": str(root / f"out_{tag}"), "num_proc": args.num_proc, "result": str(root / f"{tag}.json")}
                    r = measure(side, spec, env, root / f"{tag}.log")
                    runs[side].append(r)
                    print(f"  {tag}: job {r['job_seconds']:.1f} s (process {r['process_seconds']:.1f} s, CPU "
                          f"{r['cpu_seconds']:.1f} s, job CPU {r['job_cpu_seconds']:.1f} s, load before {r['load_before']:.1f}), peak RSS {fmt_bytes(r['peak_rss'])}, "
                          f"{fmt_bytes(r['arrow_bytes'])} of .arrow", flush=True)
                    shutil.rmtree(env["HF_DATASETS_CACHE"], ignore_errors=True)
                    if k or scale > 1: shutil.rmtree(r["output"], ignore_errors=True)  # keep one 1x output for the check
            for side, rs in runs.items():
                med = lambda key: statistics.median(r[key] for r in rs)
                results[scale, side] = {**rs[0], "job_seconds": med("job_seconds"), "process_seconds": med("process_seconds"),
                                        "cpu_seconds": med("cpu_seconds"), "job_cpu_seconds": med("job_cpu_seconds"),
                                        "peak_rss": max(r["peak_rss"] for r in rs),
                                        "all_job_seconds": [r["job_seconds"] for r in rs],
                                        "all_job_cpu_seconds": [r["job_cpu_seconds"] for r in rs],
                                        "all_peak_rss": [r["peak_rss"] for r in rs],
                                        "all_load_before": [r["load_before"] for r in rs]}
            if scale == 1:
                check = check_features(results[1, "ours"]["output"], results[1, "reference"]["output"],
                                       data[1]["rows"], args.check_clips)
        if args.no_reference_at_scale and args.scale > 1:
            notes.append("the reference ran at 1x only (--no-reference-at-scale)")
        verdicts = report(results, data, check, args, notes)
        print(f"\nbenchmark took {time.perf_counter() - start:.0f} s")
        if args.json:
            Path(args.json).write_text(json.dumps({"args": vars(args), "check": check, "verdicts": verdicts,
                "runs": [{"scale": s, "side": side, "clips": data[s]["clips"], "audio_seconds": data[s]["audio_seconds"],
                          **{k: v for k, v in r.items() if k != "output"}} for (s, side), r in results.items()]}, indent=2))
    finally:
        if args.keep: print(f"kept {root}")
        else: shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
