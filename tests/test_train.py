"""The train job end to end on a tiny model: outputs, overfitting, artifact checks, DDP, resume after kill -9, push."""
import csv, json, os, signal, subprocess, sys, time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from asr_finetuner.config import InputError
from asr_finetuner.preprocess import preprocess
from asr_finetuner.text import asr_metrics
from asr_finetuner.train import train
from asr_finetuner.train_outputs import TrainMetrics

BIN = Path(sys.executable).parent / "asr-finetuner"
TORCHRUN = Path(sys.executable).parent / "torchrun"



@pytest.fixture(scope="module")
def arts(tmp_path_factory):
    return tmp_path_factory.mktemp("artifacts")


@pytest.fixture(scope="module")
def sample_artifact(arts, tiny_model_dir, sample_dir):
    "A small artifact of the bundled sample, made once for this module."
    preprocess(artifact_name="it-small", model_id=str(tiny_model_dir), dataset_name=str(sample_dir),
               max_train_samples=32, max_eval_samples=8, artifacts_dir=str(arts), num_proc=1)
    return "it-small"


@pytest.fixture(scope="module")
def overfit_artifact(arts, tiny_model_dir, sample_dir, tmp_path_factory):
    "Four clips that are both the training and the evaluation split: a model that learns must overfit them."
    d = tmp_path_factory.mktemp("overfit")
    with open(sample_dir / "train" / "metadata.csv", encoding="utf-8", newline="") as f:
        rows = [r for r in csv.DictReader(f)][:4]
    with open(d / "m.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f); w.writerow(["path", "text", "split"])
        for split in ("train", "test"):
            for r in rows: w.writerow([str(sample_dir / "train" / r["file_name"]), r["transcription"], split])
    preprocess(artifact_name="it-overfit", model_id=str(tiny_model_dir), dataset_name=str(d / "m.csv"), artifacts_dir=str(arts), num_proc=1)
    return "it-overfit", str(d / "m.csv")


@pytest.fixture(scope="module")
def english_artifact(arts, tiny_model_dir, sample_dir):
    "The sample again, labelled as English: an eval set decoded in another language, and rows to mix in."
    preprocess(artifact_name="en-small", model_id=str(tiny_model_dir), dataset_name=str(sample_dir), language="English",
               max_train_samples=16, max_eval_samples=8, artifacts_dir=str(arts), num_proc=1)
    return "en-small"


def params(tiny_model_dir, sample_dir, arts, out, **kw):
    base = dict(model_name="tiny-it", model_id=str(tiny_model_dir), dataset_name=str(sample_dir), artifact_name="it-small",
                artifacts_dir=str(arts), output_dir=str(out), max_steps=6, eval_steps=3, save_steps=3, logging_steps=1,
                warmup_steps=0, train_batch_size=4, eval_batch_size=8, learning_rate=1e-3, generation_max_length=24)
    return {**base, **kw}


def test_train_writes_a_complete_model_folder(tmp_path, tiny_model_dir, sample_dir, arts, sample_artifact):
    out = tmp_path / "out"
    with pytest.warns(UserWarning, match="save_steps=100 is above max_steps=6"):
        m = train(**params(tiny_model_dir, sample_dir, arts, out, save_steps=100))
    from asr_finetuner.whisper import load_model, load_processor
    model, processor = load_model(out), load_processor(out)
    assert model.generation_config.language == "it" and model.generation_config.forced_decoder_ids is None
    assert (out / "preprocessor_config.json").is_file() and (out / "tokenizer.json").is_file()
    assert [p.name for p in out.glob("checkpoint-*")] == ["checkpoint-6"]
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["step_0"]["step"] == 0 and [e["step"] for e in saved["evaluations"]] == [0, 3, 6]
    assert TrainMetrics.read(out / "metrics.json") == m  # the file is what the job returned, typed
    assert set(saved["final"]) == {"wer", "wer_normalized", "cer", "cer_normalized", "repetition_rate"}
    assert saved["step_0"]["wer"] > 0.9  # a random model's step-0 transcripts are gibberish
    assert saved["train_samples_per_second"] > 0 and saved["eval_real_time_factor"] > 0 and saved["peak_memory_mb"] > 0
    preds = [json.loads(l) for l in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 8 and all({"source", "reference", "prediction", "wer"} <= p.keys() for p in preds)
    assert abs(asr_metrics([p["prediction"] for p in preds], [p["reference"] for p in preds])["wer"] - saved["final"]["wer"]) < 1e-9
    assert json.loads((out / "train_config.json").read_text())["max_steps"] == 6
    card = (out / "README.md").read_text()
    assert "model-index:" in card and "automatic-speech-recognition" in card
    assert (out / "training_curves.png").read_bytes()[:4] == b"\x89PNG"


def test_tiny_model_overfits_a_few_clips(tmp_path, tiny_model_dir, arts, overfit_artifact):
    name, dataset = overfit_artifact
    m = train(model_name="overfit", model_id=str(tiny_model_dir), dataset_name=dataset, artifact_name=name,
              artifacts_dir=str(arts), output_dir=str(tmp_path / "out"), max_steps=120, eval_steps=1000, save_steps=1000,
              logging_steps=20, warmup_steps=10, train_batch_size=4, eval_batch_size=4, learning_rate=3e-3, generation_max_length=32)
    assert m.step_0["wer"] > 0.9
    assert m.final["wer"] < 0.1, m.final
    # the random base model does not pick Italian; trained on Italian labels, it identifies every eval clip as Italian
    assert (m.checks["step_0"]["language_accuracy"], m.checks["final"]["language_accuracy"]) == (0.0, 1.0)
    assert m.checks["final"]["step"] == 120 and m.checks["final"]["hallucination_rate"] == 1.0  # it talks on silence too
    assert TrainMetrics.read(tmp_path / "out" / "metrics.json").checks == m.checks


def test_artifact_that_does_not_fit_is_refused(tmp_path, tiny_model_dir, tiny_model_dir_128, sample_dir, arts, sample_artifact):
    p = params(tiny_model_dir, sample_dir, arts, tmp_path / "out")
    with pytest.raises(InputError, match="has 80 mel bins but .* takes 128"):
        train(**{**p, "model_id": str(tiny_model_dir_128)})
    with pytest.raises(InputError, match="was made with dataset_name="):
        train(**{**p, "dataset_name": "someone/else"})
    with pytest.raises(InputError, match="was made with language='Italian', not 'German'"):
        train(**{**p, "language": "de"})
    with pytest.raises(InputError, match="was made with task='transcribe'"):
        train(**{**p, "task": "translate"})
    with pytest.raises(InputError, match="above artifact it-small's"):
        train(**{**p, "max_sequence_length": 300})
    with pytest.raises(InputError, match="run the preprocess job"):
        train(**{**p, "artifact_name": "missing"})


def test_push_sends_the_complete_folder_and_no_secret(tmp_path, tiny_model_dir, sample_dir, arts, sample_artifact, monkeypatch):
    from huggingface_hub import HfApi
    secret = "hf_TESTSECRET0123456789"
    monkeypatch.setenv("HF_TOKEN", secret)
    sent = {}
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: f"https://huggingface.co/{repo_id}")
    def upload_folder(self, repo_id, folder_path, ignore_patterns=None, **kw):
        from huggingface_hub.utils import filter_repo_objects
        files = [p for p in Path(folder_path).rglob("*") if p.is_file()]
        rel = [str(p.relative_to(folder_path)) for p in files]
        sent.update(repo_id=repo_id, files=list(filter_repo_objects(rel, ignore_patterns=ignore_patterns)), folder=folder_path)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    m = train(**params(tiny_model_dir, sample_dir, arts, tmp_path / "out", model_name="me/tiny-it", push_to_hub=True, max_steps=2))
    assert sent["repo_id"] == "me/tiny-it" and m.pushed_to.endswith("me/tiny-it")
    for f in ("model.safetensors", "config.json", "generation_config.json", "tokenizer.json", "preprocessor_config.json",
              "README.md", "metrics.json", "train_config.json", "predictions.jsonl"):
        assert f in sent["files"], f
    assert not any(f.startswith("checkpoint-") or f == ".lock" for f in sent["files"])
    for f in Path(sent["folder"]).rglob("*"):
        if f.is_file(): assert secret.encode() not in f.read_bytes(), f


def test_two_trainings_in_one_folder_are_refused(tmp_path, tiny_model_dir, sample_dir, arts, sample_artifact):
    from asr_finetuner.train import OutputLock
    out = tmp_path / "out"
    with OutputLock(out):
        with pytest.raises(InputError, match="Another training is writing to"):
            train(**params(tiny_model_dir, sample_dir, arts, out))


def cli_args(p):
    return [a for k, v in p.items() for a in (f"--{k}", str(v))]


def losses(out):
    state = json.loads(max(Path(out).glob("checkpoint-*/trainer_state.json"), key=lambda p: int(p.parent.name.split("-")[1])).read_text())
    return {h["step"]: h["loss"] for h in state["log_history"] if "loss" in h}


def encoder_inputs(monkeypatch)->list:
    "Record a digest of what the encoder reads at each training step (after every augmentation, SpecAugment included)."
    import hashlib
    import asr_finetuner.train as tr
    seen, real = [], tr.prepare_model
    def prepare(cfg):
        model = real(cfg)
        def hook(module, args):
            if module.training: seen.append(hashlib.sha1(args[0].detach().cpu().numpy().tobytes()).hexdigest())
        model.model.encoder.register_forward_pre_hook(hook)
        return model
    monkeypatch.setattr(tr, "prepare_model", prepare)
    return seen


def test_resume_after_kill_matches_an_uninterrupted_run(tmp_path, tiny_model_dir, sample_dir, arts, sample_artifact, monkeypatch):
    """With every augmentation on (speed, warp, babble noise, SpecAugment): the resumed run's encoder reads, bit for bit,
    what the uninterrupted run's read at the same steps, and its losses agree."""
    p = params(tiny_model_dir, sample_dir, arts, tmp_path / "straight", max_steps=12, save_steps=4, eval_steps=1000,
               eval_batch_size=8, generation_max_length=4, speed_perturbation=0.2, frequency_warp=0.1, noise_snr="5,20",
               noise_type="babble", apply_spec_augment=True, mask_time_prob=0.1, mask_feature_prob=0.1)
    seen = encoder_inputs(monkeypatch)
    train(**p)
    straight_inputs = list(seen)
    reference = losses(tmp_path / "straight")
    killed = {**p, "output_dir": str(tmp_path / "killed")}
    log = open(tmp_path / "killed.log", "w")
    proc = subprocess.Popen([str(BIN), "train", *cli_args(killed)], stdout=log, stderr=log, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and not list((tmp_path / "killed").glob("checkpoint-*/trainer_state.json")): time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed: " + (tmp_path / "killed.log").read_text()[-2000:]
    os.killpg(proc.pid, signal.SIGKILL); proc.wait()
    assert not (tmp_path / "killed" / "metrics.json").exists()
    seen.clear()
    m = train(**killed)
    resumed_inputs = list(seen)
    assert m.steps == 12
    first = 13 - len(resumed_inputs)  # the step the resumed run started at (after the killed run's last checkpoint)
    assert len(straight_inputs) == 12 and first > 1 and resumed_inputs == straight_inputs[first - 1:]
    assert len(set(straight_inputs)) == 12  # every step's input drawn anew
    resumed = losses(tmp_path / "killed")
    assert sorted(resumed) == sorted(reference) == list(range(1, 13))
    # the same inputs; what differs is float rounding after the optimizer state is reloaded (about 1e-5 of the loss)
    for step in reference: assert resumed[step] == pytest.approx(reference[step], rel=1e-4), (step, resumed[step], reference[step])


def test_ddp_with_two_cpu_processes(tmp_path, tiny_model_dir, sample_dir, arts, sample_artifact):
    out = tmp_path / "ddp"
    p = params(tiny_model_dir, sample_dir, arts, out, max_steps=4, eval_steps=2, save_steps=2, train_batch_size=2)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([str(TORCHRUN), "--nproc_per_node", "2", "--master_port", "29533", str(BIN), "train", *cli_args(p)],
                       capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("Model tiny-it saved to") == 1, r.stdout  # one process writes the outputs
    m = TrainMetrics.read(out / "metrics.json")
    assert m.steps == 4 and [e["step"] for e in m.evaluations] == [0, 2, 4]
    preds = [json.loads(l) for l in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 8 and len({x["source"] for x in preds}) == 8  # every eval clip once, none twice
    kept = next(e for e in m.evaluations if e["step"] == m.kept["step"])  # the best step, loaded back on both ranks
    assert abs(kept["wer"] - m.final["wer"]) < 1e-9  # the ranks' gathered eval agrees with the final one
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["train_batch_size"] == 2 and state["global_step"] == 4


def test_wandb_run_records_the_artifact_it_trains_on_offline(tmp_path, tiny_model_dir, sample_dir, arts, sample_artifact, monkeypatch):
    from asr_finetuner.artifacts import load_artifact
    from asr_finetuner.artifacts import wandb_artifact_ref
    monkeypatch.setenv("WANDB_MODE", "offline"); monkeypatch.setenv("WANDB_DIR", str(tmp_path)); monkeypatch.setenv("WANDB_SILENT", "true")
    import wandb; wandb.teardown()  # W&B keeps its settings (its folder) per process: start afresh in this test's folder
    train(**params(tiny_model_dir, sample_dir, arts, tmp_path / "out", max_steps=2, eval_steps=2, save_steps=2,
                   generation_max_length=4, wandb=True))
    ref = wandb_artifact_ref(load_artifact("it-small", arts)[1])
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    logged = b"".join(p.read_bytes() for p in runs[0].rglob("*.wandb"))
    assert len(runs) == 1 and ref.encode() in logged and b"final/wer" in logged  # the link, and the finished run's summary
    assert b"checks/step_0/language_accuracy" in logged and b"checks/final/hallucination_rate" in logged


class FakeRun:
    "Stands for an online `wandb.run`: records what the callback asks of it."
    offline = False
    def __init__(self, has_artifact): self.has_artifact, self.used, self.config = has_artifact, [], FakeConfig()
    def use_artifact(self, ref, type=None):
        import wandb
        if not self.has_artifact: raise wandb.errors.CommError(f"artifact {ref} not found")
        self.used.append((ref, type))


class FakeConfig(dict):
    def update(self, d, allow_val_change=False): super().update(d)


@pytest.mark.parametrize("has_artifact", [True, False])
def test_online_wandb_run_uses_the_artifact_preprocess_logged(monkeypatch, has_artifact):
    import wandb
    from asr_finetuner.train import WandbArtifactCallback
    manifest = SimpleNamespace(artifact_name="it-cv", fingerprint="ab" * 32)
    run = FakeRun(has_artifact); monkeypatch.setattr(wandb, "run", run)
    if has_artifact:
        WandbArtifactCallback(manifest).on_train_begin(None, None, None)
        assert run.used == [("it-cv:fp-abababababababab", "dataset")]
    else:
        with pytest.warns(UserWarning, match="W&B has no artifact it-cv:fp-abababababababab .* preprocess with wandb=True"):
            WandbArtifactCallback(manifest).on_train_begin(None, None, None)
    assert run.config["wandb_artifact"] == "it-cv:fp-abababababababab" and run.config["artifact_fingerprint"] == "ab" * 32


def test_augmentation_changes_training_batches_and_not_evaluation(tmp_path, tiny_model_dir, sample_dir, arts, sample_artifact, monkeypatch):
    "Each augmentation (speed and warp, noise from a folder of recordings, SpecAugment) changes what the encoder reads in training only."
    import soundfile as sf
    short = dict(max_steps=3, eval_steps=1000, save_steps=1000, generation_max_length=4)
    seen = encoder_inputs(monkeypatch)
    plain = train(**params(tiny_model_dir, sample_dir, arts, tmp_path / "plain", **short))
    plain_inputs = list(seen)
    scores = lambda m: {k: m.step_0[k] for k in ("wer", "cer", "loss")}
    (tmp_path / "noises").mkdir()
    sf.write(tmp_path / "noises" / "hum.wav", 0.1 * np.sin(2 * np.pi * 50 * np.arange(8_000) / 8_000), 8_000)
    for name, augmentation in {"aug": dict(speed_perturbation=0.2, frequency_warp=0.1),
                               "noise": dict(noise_snr="0,10", noise_dir=str(tmp_path / "noises")),
                               "masks": dict(apply_spec_augment=True, mask_time_prob=0.2, mask_feature_prob=0.2)}.items():
        seen.clear()
        augmented = train(**params(tiny_model_dir, sample_dir, arts, tmp_path / name, **augmentation, **short))
        assert scores(plain) == scores(augmented), name  # the same model scored on the same, unaugmented, evaluation batches
        assert len(seen) == len(plain_inputs) == 3 and all(a != b for a, b in zip(seen, plain_inputs)), name  # every training batch changed
    assert json.loads((tmp_path / "masks" / "config.json").read_text())["apply_spec_augment"] is True  # the model says how it was trained


def weights_digest(model)->str:
    import hashlib
    h = hashlib.sha1()
    for name, p in sorted(model.state_dict().items()): h.update(name.encode()); h.update(p.detach().cpu().float().numpy().tobytes())
    return h.hexdigest()


def test_eval_sets_and_the_best_step(tmp_path, tiny_model_dir, sample_dir, arts, sample_artifact, english_artifact, overfit_artifact, monkeypatch):
    """Two further eval sets, in two languages, scored at every evaluation into metrics.json, the card and W&B (offline);
    the saved model is the best evaluated step's weights, and the last checkpoint stays for a re-run."""
    from transformers import TrainerCallback
    from asr_finetuner.whisper import load_model
    monkeypatch.setenv("WANDB_DIR", str(tmp_path)); monkeypatch.setenv("WANDB_SILENT", "true")
    import wandb; wandb.teardown()
    weights = {}
    class Weights(TrainerCallback):  # what the model is at each evaluation
        def on_evaluate(self, args, state, control, model=None, **kw): weights[state.global_step] = weights_digest(model)
    out = tmp_path / "out"
    m = train(**params(tiny_model_dir, sample_dir, arts, out, max_steps=6, eval_steps=2, save_steps=4, generation_max_length=8,
                       eval_sets=f"{english_artifact},it-overfit", wandb=True), callbacks=[Weights()])
    assert list(m.eval_sets) == ["en-small", "it-overfit"]
    assert (m.eval_sets["en-small"]["language"], m.eval_sets["it-overfit"]["language"]) == ("English", "Italian")
    for s in m.eval_sets.values():
        assert [e["step"] for e in s["evaluations"]] == [0, 2, 4, 6] and s["step_0"]["wer"] > 0.5
        assert set(s["final"]) >= {"wer", "wer_normalized", "cer", "repetition_rate"}
    # the English set is decoded in English: its labels start with <|en|>, so a forced <|it|> would be scored as wrong
    assert m.eval_sets["en-small"]["utterances"] == 8 and m.eval_sets["it-overfit"]["utterances"] == 4
    # the best step: the first lowest normalised WER among the fine-tuned steps, its weights saved
    tried = [e for e in m.evaluations if e["step"] > 0]
    best = min(tried, key=lambda e: e["wer_normalized"])
    assert m.kept["step"] == best["step"] and m.kept["best_metric"] == "wer_normalized"
    assert json.loads((out / "best-step" / "best.json").read_text())["step"] == best["step"]
    assert weights_digest(load_model(out)) == weights[best["step"]]
    assert weights[6] != weights[2]  # the steps' weights differ: the comparison above can tell them apart
    assert {k: m.final[k] for k in ("wer", "cer")} == {k: best[k] for k in ("wer", "cer")}  # final: the saved model's scores
    assert m.last_step["step"] == 6 and m.eval_sets["en-small"]["final"]["wer"] == next(e["wer"] for e in m.eval_sets["en-small"]["evaluations"] if e["step"] == best["step"])
    assert [p.name for p in out.glob("checkpoint-*")] == ["checkpoint-6"]  # the last checkpoint stays for a re-run
    assert m.checks["final"]["model_step"] == best["step"] and m.checks["final"]["step"] == 6  # run at the end, on the saved model
    assert m.checks["final"]["sets"]["en-small"]["language_clips"] == 8 and "language_accuracy" in m.checks["step_0"]["sets"]["it-overfit"]
    card = (out / "README.md").read_text()
    import yaml
    results = yaml.safe_load(card.split("---")[1])["model-index"][0]["results"]
    assert [r["dataset"]["name"] for r in results] == [str(sample_dir), "en-small", "it-overfit"]
    assert [r["dataset"]["config"] for r in results] == ["it", "en", "it"]
    assert f"The saved model is step {best['step']} of 6" in card and "| en-small (English, 8 utterances) |" in card
    logged = b"".join(p.read_bytes() for p in (tmp_path / "wandb").glob("offline-run-*/**/*.wandb"))
    assert b"eval/en-small_wer" in logged and b"sets/it-overfit/final/wer" in logged and b"kept/step" in logged
    assert TrainMetrics.read(out / "metrics.json") == m


def training_batches(monkeypatch)->list:
    "Record a digest of each training batch the model reads: features (after augmentation) and labels."
    import hashlib
    import asr_finetuner.train as tr
    seen, real = [], tr.prepare_model
    def prepare(cfg):
        model = real(cfg)
        def hook(module, args, kwargs):
            if module.training:
                seen.append(hashlib.sha1(kwargs["input_features"].numpy().tobytes() + kwargs["labels"].numpy().tobytes()).hexdigest())
        model.register_forward_pre_hook(hook, with_kwargs=True)
        return model
    monkeypatch.setattr(tr, "prepare_model", prepare)
    return seen


def test_mixed_training_draws_its_shares_and_resumes_exactly(tmp_path, tiny_model_dir, sample_dir, arts, sample_artifact, english_artifact, monkeypatch):
    "A quarter of the rows from another artifact (another language) and a tenth without speech: exact shares per epoch, within 2 points over 10,000 shuffled draws, exact resume."
    import torch
    from transformers import TrainerCallback
    from asr_finetuner.artifacts import load_artifact
    from asr_finetuner.sets import MixedRows
    p = params(tiny_model_dir, sample_dir, arts, tmp_path / "straight", max_steps=6, save_steps=3, eval_steps=1000,
               generation_max_length=4, mix_artifacts=f"{english_artifact}:0.25", speed_perturbation=0.1, nospeech_share=0.1)
    seen = training_batches(monkeypatch)
    m = train(**p)
    straight = list(seen)
    assert [(x["artifact_name"], round(x["share"], 6), x["rows_per_epoch"]) for x in m.mixed] == [("it-small", 0.65, 32), ("en-small", 0.25, 12), ("non-speech", 0.1, 5)]
    assert m.mixed[2]["sources"][:4] == ["digital silence", "white noise", "pink noise", "babble"]
    assert m.mixed[1]["fingerprint"] == load_artifact("en-small", arts)[1].fingerprint and m.mixed[1]["language"] == "English"
    # the trainer's shuffled sampler over as many epochs as 10,000 draws take: each share within 2 points
    dd = {n: load_artifact(n, arts)[0]["train"].with_format("numpy") for n in ("it-small", "en-small")}
    mixed = MixedRows([dd["it-small"], dd["en-small"]], [0.75, 0.25], seed=42)
    sampler, drawn = torch.utils.data.RandomSampler(mixed, generator=torch.Generator().manual_seed(42)), []
    while len(drawn) < 10_000: drawn += list(sampler)
    assert abs(mixed.drawn_shares(drawn[:10_000])[1] - 0.25) < 0.02
    english = sum(int(r["labels"][1]) == 50259 for r in mixed.__getitems__(list(range(len(mixed)))))  # <|en|> after <|startoftranscript|>
    assert english == 11  # one epoch: the quota exactly
    # stopped after its checkpoint at step 3 and run again: it resumes and reads what the straight run read
    class StopAt3(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 3: control.should_training_stop = True
    seen.clear()
    stopped = {**p, "output_dir": str(tmp_path / "stopped")}
    train(**stopped, callbacks=[StopAt3()])
    train(**stopped)
    assert len(straight) == 6 and seen == straight


def test_loader_workers_feed_the_batches_one_process_makes(tmp_path, tiny_model_dir, sample_dir, arts, sample_artifact, monkeypatch):
    "dataloader_num_workers=2 on CPU: augmented batches drawn in worker processes are the ones the training process draws itself."
    p = params(tiny_model_dir, sample_dir, arts, tmp_path / "inline", max_steps=3, save_steps=3, eval_steps=1000,
               generation_max_length=4, speed_perturbation=0.1, frequency_warp=0.1)
    seen = training_batches(monkeypatch)
    train(**p, dataloader_num_workers=0)
    inline = list(seen)
    seen.clear()
    train(**{**p, "output_dir": str(tmp_path / "workers")}, dataloader_num_workers=2)
    assert len(inline) == 3 and seen == inline


def test_optimizer_attention_and_lora_options_reach_the_training(tmp_path, tiny_model_dir, sample_dir, arts, sample_artifact, capsys):
    """optim=adafactor, attn_implementation=eager and LoRA with its alpha, dropout and layers: what the trainer really runs;
    num_train_epochs sets the steps, and the plan printed before step 1 is kept in metrics.json."""
    pytest.importorskip("peft")
    from transformers import TrainerCallback
    seen = {}
    class Look(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, optimizer=None, **kw):
            c = model.peft_config["default"]
            seen.update(optimizer=type(getattr(optimizer, "optimizer", optimizer)).__name__, attention=model.config._attn_implementation,
                        lora=(c.r, c.lora_alpha, c.lora_dropout, sorted(c.target_modules)))
    p = params(tiny_model_dir, sample_dir, arts, tmp_path / "out", num_train_epochs=0.25, save_steps=2, eval_steps=1000, generation_max_length=4)
    m = train(**p, optim="adafactor", attn_implementation="eager", lora=True, lora_rank=4, lora_alpha=16, lora_dropout=0.1,
              lora_target_modules="q_proj,k_proj,v_proj,fc1", callbacks=[Look()])
    assert seen == {"optimizer": "Adafactor", "attention": "eager", "lora": (4, 16, 0.1, ["fc1", "k_proj", "q_proj", "v_proj"])}
    assert m.steps == 2 and m.final_loss is not None and (tmp_path / "out" / "model.safetensors").is_file()  # a quarter of 32 rows at 4 a step
    plan = TrainMetrics.read(tmp_path / "out" / "metrics.json").plan
    assert (plan["rows"], plan["rows_per_step"], plan["steps"], plan["epochs"]) == (32, 4, 2, 0.25)
    assert 0 < plan["trainable_parameters"] < plan["parameters"] / 10  # LoRA: the adapters only
    e = plan["memory_estimate"]
    assert e["total"] == e["weights"] + e["gradients"] + e["optimizer"] + e["activations"] and e["gradients"] == 4 * plan["trainable_parameters"]
    assert "Plan: " in capsys.readouterr().out
    saved = json.loads((tmp_path / "out" / "train_config.json").read_text())
    assert (saved["optim"], saved["lora_target_modules"]) == ("adafactor", ["q_proj", "k_proj", "v_proj", "fc1"])


def test_an_option_whose_package_is_missing_fails_before_any_work(tmp_path, capsys, monkeypatch):
    "bitsandbytes is in dev; here it is made missing, as on a machine without it, for the optimizer and for QLoRA."
    import importlib.util
    from asr_finetuner.cli import main
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a))
    base = ["train", "--model_name", "m", "--model_id", "nowhere", "--dataset_name", "d", "--artifact_name", "a", "--output_dir", str(tmp_path / "out")]
    for extra, message in ((["--optim", "adamw_8bit"], "optim=adamw_8bit needs bitsandbytes: pip install bitsandbytes"),
                           (["--lora", "True", "--lora_bits", "4"], "lora_bits=4 quantises the base weights with bitsandbytes: pip install 'asr-finetuner[qlora]'")):
        with pytest.raises(SystemExit) as e:  # no artifact, no model: the option is refused first
            main(base + extra)
        err = capsys.readouterr().err
        assert e.value.code == 2 and message in err and "Traceback" not in err, err
