"""Benchmark: how many 30 s training windows one data-loader worker makes per second (fetch, augmentation, collate).

Run from the repository root:

    OMP_NUM_THREADS=1 .venv/bin/python bench/loader_bench.py [--batches 20] [--batch 8]

One process, one thread, no model: the train job's own pieces (`load_training_data`, `make_augmentation`,
`AugmentedRows`, the `WhisperCollator` of `make_trainer`) over an artifact of the bundled sample made for a 30 s
window, through a `DataLoader` with `num_workers=0`, i.e. what each of `dataloader_num_workers` does. Plain rows, then
speed perturbation + mel-axis warp + pink noise. The figure tells how many cores feed a GPU at a given samples/s.
"""
from __future__ import annotations
import argparse, tempfile, time
from pathlib import Path

from common import SAMPLE


def main():
    ap = argparse.ArgumentParser(); ap.add_argument("--batches", type=int, default=20); ap.add_argument("--batch", type=int, default=8)
    a = ap.parse_args()
    import torch
    from asr_finetuner.artifacts import load_artifact
    from asr_finetuner.augment import AugmentedRows, make_augmentation
    from asr_finetuner.config import TrainConfig, make_config
    from asr_finetuner.preprocess import preprocess
    from asr_finetuner.train import WhisperCollator, load_training_data
    from asr_finetuner.whisper import build_tiny_whisper
    tmp = Path(tempfile.mkdtemp(prefix="loader-bench-"))
    model, processor = build_tiny_whisper(tmp / "model", language="it", window_seconds=30)
    preprocess(artifact_name="it", model_id=str(tmp / "model"), dataset_name=str(SAMPLE), artifacts_dir=str(tmp / "arts"), num_proc=1)
    collator = WhisperCollator(3000, model.config.decoder_start_token_id, pad_token_id=model.config.pad_token_id,
                               max_target_positions=model.config.max_target_positions)
    print(f"torch threads: {torch.get_num_threads()}; batch {a.batch}; {a.batches} batches after 2 warm-up ones")
    for name, extra in (("plain", {}), ("speed 0.1 + warp 0.1 + pink noise 5-20 dB", dict(speed_perturbation=0.1, frequency_warp=0.1, noise_snr="5,20"))):
        cfg = make_config(TrainConfig, model_name="b", model_id=str(tmp / "model"), dataset_name=str(SAMPLE), artifact_name="it",
                          artifacts_dir=str(tmp / "arts"), output_dir=str(tmp / "out"), **extra)
        dd, _ = load_artifact("it", str(tmp / "arts"))
        rows = load_training_data(cfg, dd)[0]
        augment = make_augmentation(cfg, processor, rows, 3000)
        data = AugmentedRows(rows, augment, cfg.seed) if augment.active else rows
        loader = torch.utils.data.DataLoader(data, batch_size=a.batch, shuffle=True, collate_fn=collator, num_workers=0,
                                             generator=torch.Generator().manual_seed(0))
        it, n = iter(loader), 0
        def next_batch():
            nonlocal it
            try: return next(it)
            except StopIteration: it = iter(loader); return next(it)
        for _ in range(2): next_batch()
        t = time.perf_counter()
        for _ in range(a.batches): n += len(next_batch()["input_features"])
        dt = time.perf_counter() - t
        print(f"{name}: {n / dt:.0f} windows/s per worker ({1000 * dt / a.batches:.1f} ms per batch of {a.batch})", flush=True)


if __name__ == "__main__":
    main()
