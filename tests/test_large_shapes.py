"""large-v3's and large-v3-turbo's shapes, in small, through every job: 128 mel bins, the 51,866-id vocabulary (Cantonese,
`<|nospeech|>`), and turbo's fewer decoder layers than encoder layers. large-v3 is fully fine-tuned; turbo trains QLoRA
adapters on 4-bit weights, so the folder its merge saves must be one that evaluate, transcribe and export take as it is."""
import json

import pytest

from asr_finetuner import export as ex
from asr_finetuner.evaluate import evaluate
from asr_finetuner.preprocess import preprocess
from asr_finetuner.train import train
from asr_finetuner.transcribe import transcribe
from asr_finetuner.whisper import LARGE_SHAPES, build_tiny_whisper, load_model, load_processor, no_speech_token

pytest.importorskip("ctranslate2", reason="the export extra is part of dev: pip install -e '.[dev]'")
pytestmark = pytest.mark.xdist_group("large_shapes")  # one worker builds each shape's model once, not one per test
TRAINING = {"large-v3": {}, "large-v3-turbo": dict(lora=True, lora_rank=4, lora_bits=4, optim="adamw_8bit")}


@pytest.fixture(scope="module")
def built(tmp_path_factory, sample_dir):
    "Each shape's trained folder, made on first use and kept for the module (whatever order the tests run in)."
    pytest.importorskip("bitsandbytes")
    cache = {}
    def get(shape):
        if shape not in cache: cache[shape] = train_shape(shape, tmp_path_factory.mktemp(shape), sample_dir)
        return cache[shape]
    return get


def train_shape(shape, d, sample_dir):
    "A tiny model of the shape (the real 30 s window, which faster-whisper insists on), trained two steps and saved by the train job."
    build_tiny_whisper(d / "base", language="it", window_seconds=30, seed=0, **LARGE_SHAPES[shape])
    preprocess(artifact_name="it", model_id=str(d / "base"), dataset_name=str(sample_dir), max_train_samples=8, max_eval_samples=4,
               artifacts_dir=str(d / "arts"), num_proc=1)
    m = train(model_name=shape, model_id=str(d / "base"), dataset_name=str(sample_dir), artifact_name="it", artifacts_dir=str(d / "arts"),
              output_dir=str(d / "out"), max_steps=2, eval_steps=1000, save_steps=2, logging_steps=1, warmup_steps=0, train_batch_size=4,
              eval_batch_size=4, learning_rate=1e-3, generation_max_length=4, **TRAINING[shape])
    return {"shape": shape, "dir": d, "out": d / "out", "metrics": m}


@pytest.fixture(params=list(LARGE_SHAPES))
def trained(request, built):
    return built(request.param)


def test_train_saves_a_plain_model_of_the_shape(trained):
    out, shape = trained["out"], trained["shape"]
    model, processor = load_model(out), load_processor(out)
    c = model.config
    assert (c.num_mel_bins, c.vocab_size, processor.feature_extractor.feature_size, len(processor.tokenizer)) == (128, 51866, 128, 51866)
    assert (c.encoder_layers, c.decoder_layers) == ((4, 1) if shape == "large-v3-turbo" else (2, 2))
    assert no_speech_token(processor.tokenizer) == "<|nospeech|>" and model.generation_config.no_timestamps_token_id == 50364
    assert "quantization_config" not in json.loads((out / "config.json").read_text())  # merged and dequantised: plain float32
    assert {type(m).__name__ for m in model.modules() if "Linear" in type(m).__name__} == {"Linear"}
    assert trained["metrics"].steps == 2 and trained["metrics"].final_loss is not None
    plan = trained["metrics"].plan
    adapters = plan["trainable_parameters"] if shape == "large-v3-turbo" else 0  # merged away since
    assert plan["parameters"] - adapters == sum(p.numel() for p in model.parameters())  # 4-bit weights counted as the parameters they hold
    if shape == "large-v3-turbo":  # the plan saw the quantised linear layers: their weights at half a byte
        quantised = sum(m.weight.numel() for n, m in model.named_modules() if type(m).__name__ == "Linear" and n != "proj_out")
        assert plan["memory_estimate"]["weights"] < 4 * plan["parameters"] - 3.4 * quantised and plan["trainable_parameters"] < plan["parameters"] / 10
    else: assert plan["memory_estimate"]["weights"] == 4 * plan["parameters"]


def test_evaluate_transcribe_and_export_take_the_saved_folder(trained, sample_dir, tmp_path):
    out, arts = trained["out"], trained["dir"] / "arts"
    m = evaluate(model_id=str(out), artifact_name="it", artifacts_dir=str(arts), output_dir=str(tmp_path / "eval"), generation_max_length=4)
    assert m.num_utterances == 4
    clip = str(sorted((sample_dir / "test").glob("*.ogg"))[0])
    folders = {"transformers": out}
    for fmt, q in (("ctranslate2", "float32"), ("ggml", "f16")):
        folders[fmt] = tmp_path / fmt
        ex.export(model_id=str(out), format=fmt, quantization=q, output_dir=str(folders[fmt]), parity_check=False)
    ct2 = json.loads((folders["ctranslate2"] / "config.json").read_text())
    assert len(ct2["lang_ids"]) == 100 and 50358 in ct2["lang_ids"]  # Cantonese among the languages, no control token among them
    for backend, folder in folders.items():
        model_id = str(next(folder.glob("*.bin"))) if backend == "ggml" else str(folder)
        [r] = transcribe(model_id=model_id, audio=[clip], language="it", generation_max_length=4, temperature="0")
        assert r["duration"] > 0 and isinstance(r["text"], str), backend
