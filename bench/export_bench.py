"""Deployment runtimes on a real Whisper base: WER, real-time factor and size on disk of transformers (fp32),
faster-whisper (CTranslate2 int8) and whisper.cpp (GGML f16 and q5_0), on the same clips, one file at a time,
greedy with no temperature fallback, 2 threads each.

    .venv/bin/python bench/export_bench.py --work /tmp/asr-export --manifest /tmp/asr-guardrails/data/gb-ood.csv

The manifest is a CSV of path,text,split (its `test` rows are used); `bench/guardrails_bench.py data` writes one
(90 clips of two Italian sentences, 1,054 words). The model is built by `../shared/tools/real_whisper/build.sh`
into the work folder. Not part of the test suite. See EXPORT.md.
"""
import argparse, csv, json, time
from pathlib import Path

from common import build_model

TARGETS = (("transformers", None), ("ctranslate2", "int8"), ("ggml", "f16"), ("ggml", "q5_0"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/asr-export"))
    ap.add_argument("--manifest", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-clips", type=int, default=None)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    import torch
    torch.set_num_threads(a.threads)
    from asr_finetuner.audio import load_audio
    from asr_finetuner.config import DecodingOptions
    from asr_finetuner.export import export
    from asr_finetuner.runtimes import open_runtime
    from asr_finetuner.text import asr_metrics
    model = build_model(a.work)
    rows = [r for r in csv.DictReader(open(a.manifest, encoding="utf-8")) if r["split"] == "test"][:a.max_clips]
    clips, refs = [load_audio(r["path"], 16_000) for r in rows], [r["text"] for r in rows]
    audio_seconds = sum(len(c) for c in clips) / 16_000
    print(f"{len(clips)} clips, {sum(len(r.split()) for r in refs)} words, {audio_seconds / 60:.1f} min of audio; {a.threads} threads", flush=True)
    results = {}
    for fmt, q in TARGETS:
        if fmt == "transformers": where, size = model, sum(p.stat().st_size for p in Path(model).glob("model.safetensors"))
        else:
            out = a.work / "exports" / f"{fmt}-{q}"
            t = time.perf_counter()
            r = export(model_id=str(model), format=fmt, quantization=q, output_dir=str(out), parity_check=False, language="it", task="transcribe")
            print(f"exported {fmt} {q} in {time.perf_counter() - t:.1f} s", flush=True)
            where, size = (out if fmt == "ctranslate2" else out / f"ggml-model-{q}.bin"), r.size_mb * 2**20
        backend = open_runtime(str(where), fmt, a.threads)
        options = DecodingOptions(max_length=128)  # greedy, no temperature fallback
        backend.texts(clips[:1], "Italian", "transcribe", options)  # warm-up
        texts, seconds = [], 0.0
        for c in clips:  # one file at a time
            t = time.perf_counter()
            texts += backend.texts([c], "Italian", "transcribe", options)
            seconds += time.perf_counter() - t
        m = asr_metrics(texts, refs)
        name = f"{fmt} {q or 'fp32'}"
        results[name] = {"wer": m["wer"], "wer_normalized": m["wer_normalized"], "cer": m["cer"], "seconds": seconds,
                         "real_time_factor": seconds / audio_seconds, "size_mb": size / 2**20, "version": backend.version}
        print(f"{name}: WER {100 * m['wer']:.2f}% (normalised {100 * m['wer_normalized']:.2f}%), RTF {seconds / audio_seconds:.4f}, "
              f"{size / 2**20:.0f} MB", flush=True)
    base = results["transformers fp32"]
    print("\n| runtime | WER | normalised | CER | real-time factor | speed-up vs transformers | size (MB) |\n|---|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        print(f"| {name} ({r['version']}) | {100 * r['wer']:.2f} % | {100 * r['wer_normalized']:.2f} % | {100 * r['cer']:.2f} % | "
              f"{r['real_time_factor']:.4f} | {base['seconds'] / r['seconds']:.2f}x | {r['size_mb']:.0f} |")
    if a.json: a.json.write_text(json.dumps({"clips": len(clips), "words": sum(len(r.split()) for r in refs), "results": results}, indent=1))


if __name__ == "__main__":
    main()
