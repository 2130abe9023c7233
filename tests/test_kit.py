"""The offline test kit: the bundled sample speech, and tiny models saved and reloaded like Hub checkpoints."""
import csv
from collections import Counter

import numpy as np
import pytest
import soundfile as sf
import torch

from asr_finetuner.audio import load_audio
from asr_finetuner.whisper import load_model, load_processor, vocabulary_hash, build_whisper_tokenizer

SPLITS = ("train", "validation", "test")


def read_metadata(split_dir):
    with open(split_dir / "metadata.csv", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def metadata(sample_dir):
    return {s: read_metadata(sample_dir / s) for s in SPLITS}


def test_sample_has_enough_clips_voices_and_is_compact(sample_dir, metadata):
    assert sum(len(rows) for rows in metadata.values()) >= 150
    assert len({r["speaker"] for rows in metadata.values() for r in rows}) >= 2
    size = sum(p.stat().st_size for p in sample_dir.rglob("*") if p.is_file())
    assert size <= 10 * 2**20


@pytest.mark.parametrize("split", SPLITS)
def test_sample_clips_are_16k_mono_with_sane_durations_and_transcripts(sample_dir, metadata, split):
    for row in metadata[split]:
        info = sf.info(str(sample_dir / split / row["file_name"]))
        assert (info.samplerate, info.channels) == (16_000, 1)
        assert 0.9 <= info.duration <= 7.0, row["file_name"]
        assert row["transcription"].strip() == row["transcription"] and len(row["transcription"].split()) >= 2
    x = load_audio(str(sample_dir / split / metadata[split][0]["file_name"]))
    assert x.dtype == np.float32 and 0.5 < np.abs(x).max() <= 1.0


def test_sample_split_is_as_documented(metadata):
    "validation: the training sentences by a voice heard saying them, at a new speed and pitch; test: sentences never seen in training."
    train = {r["sentence_id"] for r in metadata["train"]}
    validation = {r["sentence_id"] for r in metadata["validation"]}
    test = {r["sentence_id"] for r in metadata["test"]}
    assert validation == train and not (test & train)
    seen = {(r["sentence_id"], r["speaker"]): r for r in metadata["train"]}
    assert len(seen) == len(metadata["train"])  # two different voices per training sentence
    assert all(n == 2 for n in Counter(r["sentence_id"] for r in metadata["train"]).values())
    for r in metadata["validation"]:
        ref = seen[(r["sentence_id"], r["speaker"])]  # the voice said this sentence in training...
        for key in ("speed", "pitch"):  # ...but at a clearly different speed and pitch
            assert abs(float(r[key]) - float(ref[key])) >= 0.08 - 1e-6, (r["file_name"], key)


def test_tiny_model_folder_loads_like_a_checkpoint_and_generates_the_prefix(tiny_model_dir, sample_dir, metadata):
    model, processor = load_model(tiny_model_dir), load_processor(tiny_model_dir)
    assert vocabulary_hash(processor.tokenizer) == vocabulary_hash(build_whisper_tokenizer())
    clip = load_audio(str(sample_dir / "train" / metadata["train"][0]["file_name"]))
    feats = processor.feature_extractor([clip], sampling_rate=16_000, return_tensors="pt").input_features
    assert feats.shape == (1, 80, 500)
    out = model.generate(feats, max_new_tokens=4, return_dict_in_generate=True).sequences  # language from its config
    assert out[0, :4].tolist() == [50258, 50274, 50359, 50363]
    out = model.generate(feats, language="de", task="translate", max_new_tokens=2, return_dict_in_generate=True).sequences
    assert out[0, :3].tolist() == [50258, 50261, 50358]


def test_tiny_model_with_128_mel_bins(tiny_model_dir_128):
    model, processor = load_model(tiny_model_dir_128), load_processor(tiny_model_dir_128)
    assert model.config.num_mel_bins == processor.feature_extractor.feature_size == 128
    feats = processor.feature_extractor([np.zeros(8000, np.float32)], sampling_rate=16_000, return_tensors="pt").input_features
    with torch.no_grad():
        logits = model(input_features=feats, decoder_input_ids=torch.tensor([[50258]])).logits
    assert logits.shape == (1, 1, 51865)
