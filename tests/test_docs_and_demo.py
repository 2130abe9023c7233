"""The README documents every parameter, and the demo's steps run end to end at reduced size."""
from dataclasses import fields
from pathlib import Path

import datasets
import pytest

from asr_finetuner.config import EvaluateConfig, PreprocessConfig, TrainConfig, TranscribeConfig

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("cls", [PreprocessConfig, TrainConfig, EvaluateConfig, TranscribeConfig])
def test_readme_documents_every_parameter(cls):
    section = README.split(f"#### {cls.__name__}")[1].split("####")[0]
    for f in fields(cls):
        assert f"| `{f.name}` |" in section and f.metadata["help"].replace("|", "/") in section, f.name


def test_demo_steps_at_reduced_size(tmp_path, monkeypatch, capsys):
    from asr_finetuner import jobs
    monkeypatch.setenv("ASR_FINETUNER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf"))
    monkeypatch.setitem(jobs.DEMO_TRAINING, "generation_max_length", 6)
    monkeypatch.setitem(jobs.DEMO_TRAINING, "train_batch_size", 4)
    result = jobs.demo(max_steps=2, output_root=tmp_path / "outputs", num_proc=1)
    out = capsys.readouterr().out
    assert "Validation (seen sentences, new speed and pitch): WER" in out and "Model folder:" in out
    assert (tmp_path / "outputs" / "whisper-demo-it" / "metrics.json").is_file()
    assert (tmp_path / "outputs" / "eval-test" / "predictions.jsonl").is_file()
    assert 0 <= result["final_wer"] and 0 <= result["test_wer"] and result["step_0_wer"] > 0.5
