"""Training rows without speech: a tiny model learns Whisper's no-speech answer, and its calibrated threshold travels with it."""
import json

import numpy as np
import pytest
import soundfile as sf

from asr_finetuner.artifacts import load_artifact
from asr_finetuner.checks import no_speech_probabilities, non_speech_clips, window_features
from asr_finetuner.config import CALIBRATED_FIELD, TranscribeConfig
from asr_finetuner.audio import pad_to_window
from asr_finetuner.decoding import load_for_inference, window_frames
from asr_finetuner.preprocess import preprocess
from asr_finetuner.runtimes import open_runtime
from asr_finetuner.train import train
from asr_finetuner.transcribe import transcribe

pytestmark = pytest.mark.xdist_group("nospeech")  # one worker trains the module's model once


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model_dir, sample_dir):
    "The sample's artifact, and the tiny model trained on it with a third of its rows without speech."
    d = tmp_path_factory.mktemp("nospeech")
    preprocess(artifact_name="it-ns", model_id=str(tiny_model_dir), dataset_name=str(sample_dir), max_train_samples=32,
               max_eval_samples=16, artifacts_dir=str(d / "arts"), num_proc=1)
    m = train(model_name="tiny-ns", model_id=str(tiny_model_dir), dataset_name=str(sample_dir), artifact_name="it-ns",
              artifacts_dir=str(d / "arts"), output_dir=str(d / "out"), max_steps=100, eval_steps=1000, save_steps=1000, logging_steps=10,
              warmup_steps=0, train_batch_size=8, eval_batch_size=16, learning_rate=8e-3, generation_max_length=8, nospeech_share=0.3,
              best_metric="last")
    return {"dir": d, "out": d / "out", "metrics": m}


def _probabilities(model_dir, trained, sample_dir):
    "Median no-speech probability of new non-speech clips (other seeds than training and the checks) and of the eval speech."
    model, processor = load_for_inference(str(model_dir))
    fe = processor.feature_extractor
    clips = {f"{k} {s}": v for s in (7, 8) for k, v in non_speech_clips(fe.n_samples / fe.sampling_rate, fe.sampling_rate, seed=s).items()}
    eval_rows = load_artifact("it-ns", trained["dir"] / "arts")[0]["eval"].with_format("numpy")
    speech = np.stack([pad_to_window(np.asarray(f), window_frames(model)) for f in eval_rows["log_mel_frames"]])
    return float(np.median(no_speech_probabilities(model, window_features(model, processor, clips)))), float(np.median(no_speech_probabilities(model, speech)))


def test_rows_without_speech_teach_the_no_speech_probability(trained, tiny_model_dir, sample_dir):
    "After 100 steps with 30% rows without speech: high on new non-speech, low on speech; the base model is low on both."
    base_ns, base_sp = _probabilities(tiny_model_dir, trained, sample_dir)
    ns, sp = _probabilities(trained["out"], trained, sample_dir)
    assert base_ns < 0.01 and base_sp < 0.01
    assert ns > 0.5 and sp < 0.2 and ns > 5 * sp, (ns, sp)
    end = trained["metrics"].checks["final"]
    assert end["no_speech_auroc"] > 0.9 and end["no_speech_prob_non_speech"] > end["no_speech_prob_speech"]
    s0 = trained["metrics"].checks["step_0"]
    assert 0 <= s0["hallucination_rate_gated"] <= 1 and s0["no_speech_threshold"] == 0.6  # the base model has none of its own


def test_the_calibrated_threshold_is_saved_exported_and_used(trained, tmp_path):
    "generation_config.json, metrics.json, the card and export.json carry it; transcribe gates with it and writes nothing on silence."
    out, end = trained["out"], trained["metrics"].checks["final"]
    t = end["calibrated_threshold"]
    assert 0 < t < 1 and end["no_speech_threshold"] == t and end["calibrated_speech_skipped"] <= 0.02
    assert json.loads((out / "generation_config.json").read_text())[CALIBRATED_FIELD] == t
    assert json.loads((out / "metrics.json").read_text())["checks"]["final"]["calibrated_threshold"] == t
    card = (out / "README.md").read_text()
    assert f"calibrated at the end of training: **{t:.3g}**" in card and "rows without speech (30%" in card
    runtime = open_runtime(str(out))
    assert runtime.no_speech_threshold == t
    assert TranscribeConfig(model_id=str(out), audio=["a.wav"]).decoding(runtime.no_speech_threshold).no_speech_threshold == t
    silence = tmp_path / "silence.wav"
    sf.write(silence, np.zeros(16000 * 12, np.float32), 16000)
    assert transcribe(model_id=str(out), audio=[str(silence)])[0]["text"] == ""
