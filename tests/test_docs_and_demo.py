"""The README describes the demo the code runs, and the demo's steps run end to end at reduced size
(the README's parameter tables are tests/test_readme.py's)."""
import json, math
from pathlib import Path

import datasets

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def test_the_readme_describes_the_demo_the_code_runs():
    "The README's demo sentence is the one `demo_description` writes from DEMO, DEMO_TRAINING and DEMO_SECONDS."
    from asr_finetuner.demo import DEMO, demo_description
    assert demo_description() in " ".join(README.split()), demo_description()
    assert DEMO["model_id"] in demo_description()


def test_demo_steps_at_reduced_size(tmp_path, monkeypatch, capsys):
    from asr_finetuner import demo as demo_module
    monkeypatch.setenv("ASR_FINETUNER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf"))
    monkeypatch.setitem(demo_module.DEMO_TRAINING, "generation_max_length", 6)
    monkeypatch.setitem(demo_module.DEMO_TRAINING, "train_batch_size", 4)
    result = demo_module.demo(max_steps=2, output_root=tmp_path / "outputs", num_proc=1)
    out = capsys.readouterr().out
    # the stages, the expected total, the training's progress and the summary are printed, in that order
    printed = ["Demo: it preprocesses the bundled sample, trains `builtin:whisper-tiny` from scratch on the CPU (2 steps with augmentation, about",
               "1/3 preprocess",
               "2/3 train 2 steps", "step 2/2, ", " spent, about 0 s left", "3/3 evaluate on test",
               "Validation (seen sentences, new speed and pitch): WER", "after 2 steps", "Model folder:"]
    at = [out.find(p) for p in printed]
    assert -1 not in at and at == sorted(at), dict(zip(printed, at))
    assert set(result) == {"step_0_wer", "final_wer", "test_wer", "model", "artifact", "seconds"}
    model, scores = tmp_path / "outputs" / "whisper-demo-it", tmp_path / "outputs" / "eval-test"
    assert result["model"] == str(model) and Path(result["artifact"]).is_dir()
    metrics = json.loads((model / "metrics.json").read_text())
    assert metrics["steps"] == 2 and [e["step"] for e in metrics["evaluations"]] == [0, 2]
    # every validation and test row is scored
    assert len((model / "predictions.jsonl").read_text().splitlines()) == 120
    assert len((scores / "predictions.jsonl").read_text().splitlines()) == 60
    # a random model's step-0 hypotheses are garbage; generation_max_length=6 leaves room for about two words
    # after the 4 prompt tokens, so a WER above 1.5 on ~8-word sentences means that setting did not reach
    # the evaluation
    assert result["step_0_wer"] > 0.5
    for k in ("final_wer", "test_wer"):
        assert isinstance(result[k], float) and math.isfinite(result[k]) and 0.5 < result[k] <= 1.5, (k, result[k])
