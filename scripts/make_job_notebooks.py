#!/usr/bin/env python
"""Write the job notebooks (into nbs/jobs/, or the folder given) from the jobs' parameter sets.

The parameters cell of each job notebook lists every parameter of its dataclass in
`asr_finetuner.config`, with its type, default and help, so that the notebook, the CLI and the
functions cannot drift apart (tests/test_jobs.py checks it). Run after changing a parameter set
(`make export` does), then `nbdev_clean`:

    .venv/bin/python scripts/make_job_notebooks.py            # into nbs/jobs/
    .venv/bin/python scripts/make_job_notebooks.py OUT_DIR    # elsewhere, e.g. to compare with nbs/jobs/
"""
import argparse, typing
from dataclasses import MISSING, fields
from pathlib import Path

import nbformat

from asr_finetuner.config import _unwrap_optional

JOBS = Path(__file__).resolve().parents[1] / "nbs" / "jobs"
RUN_HINT = ("Run it in Jupyter (edit the parameters cell and run all), or as a batch job with papermill:\n\n"
            "    papermill {job}.ipynb runs/{job}.ipynb -p NAME VALUE ...     # parameters one by one\n"
            "    papermill {job}.ipynb runs/{job}.ipynb -f {job}.yaml         # the same YAML file as `asr-finetuner {job} --config`\n"
            "    papermill --help-notebook {job}.ipynb                         # every parameter with its help\n\n"
            "or `asr-finetuner run-notebook {job} -f {job}.yaml`, which keeps the executed notebook beside the outputs as "
            "the run's record. Secrets (`HF_TOKEN`, `WANDB_API_KEY`) come from the environment or the login files: "
            "never pass them as parameters, since papermill writes parameters into the executed notebook.")


def type_name(anno):
    inner, optional = _unwrap_optional(anno)
    return f"Optional[{inner.__name__}]" if optional else inner.__name__  # papermill's parser reads no `int | None`


def parameters_cell(cls, defaults):
    hints = typing.get_type_hints(cls)
    lines = ["from typing import Optional"]
    for f in fields(cls):
        value = defaults.get(f.name, None if f.default is MISSING else f.default)
        lines.append(f"{f.name}: {type_name(hints[f.name])} = {value!r}  # {f.metadata.get('help', '')}")
    return "\n".join(lines)


def notebook(job, title, summary, cls, defaults, body):
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"display_name": "python3", "language": "python", "name": "python3"}}
    md = nbformat.v4.new_markdown_cell(f"# {title}\n\n> {summary}\n\n" + RUN_HINT.format(job=job))
    params = nbformat.v4.new_code_cell(parameters_cell(cls, defaults))
    params.metadata["tags"] = ["parameters"]
    cells = [md, params] + [nbformat.v4.new_markdown_cell(c[3:]) if c.startswith("## ") or c.startswith("MD:") else nbformat.v4.new_code_cell(c)
                           for c in body]
    for i, c in enumerate(cells): c["id"] = f"{job[:4]}{i:04d}"
    nb.cells = cells
    return nb


def main(out_dir:Path=JOBS, # folder to write preprocess.ipynb, train.ipynb and evaluate.ipynb into
        )->list: # the paths written
    "Write the three job notebooks into `out_dir`."
    from asr_finetuner.config import EvaluateConfig, PreprocessConfig, TrainConfig
    sample = dict(model_id="builtin:whisper-demo", dataset_name="builtin:sample-it")
    jobs = {
        "preprocess": ("Preprocess job", "A speech dataset in, a compact training artifact out.", PreprocessConfig,
                       {**sample, "artifact_name": "it-sample", "if_exists": "overwrite"}, [
            "from asr_finetuner.config import PreprocessConfig, make_config\n"
            "from asr_finetuner.preprocess import preprocess\n"
            "from asr_finetuner.reports import splits_table",
            "MD:The parameters, validated (an invalid one stops here with a message that says what to fix):",
            "config = make_config(PreprocessConfig, **{name: globals()[name] for name in PreprocessConfig.help()})\nconfig",
            "manifest = preprocess(config)",
            "MD:Rows kept and dropped per split, and where the artifact is:",
            "splits_table(manifest)",
            "print(manifest.path, manifest.fingerprint[:16])",
            "MD:The rows themselves: pick a split and a row to see its transcript, its label tokens (language, task, timestamps "
            "and prompt marked), its log-mel image, and to hear its source clip:",
            "from asr_finetuner.explore import ArtifactExplorer\nArtifactExplorer(config.artifact_name, config.artifacts_dir)",
        ]),
        "train": ("Train job", "Fine-tune Whisper on an artifact, score it, and save a complete model folder.", TrainConfig,
                  {**sample, "artifact_name": "it-sample", "model_name": "whisper-demo-it", "max_steps": 300, "eval_steps": 100,
                   "save_steps": 100, "warmup_steps": 30, "logging_steps": 10, "learning_rate": 1e-3, "train_batch_size": 16,
                   "eval_batch_size": 32, "generation_max_length": 40}, [
            "from IPython.display import Image\n"
            "from asr_finetuner.config import TrainConfig, make_config\n"
            "from asr_finetuner.train import train\n"
            "from asr_finetuner.reports import guardrails_table, scores_table, show_worst",
            "MD:The parameters, validated (an invalid one stops here with a message that says what to fix):",
            "config = make_config(TrainConfig, **{name: globals()[name] for name in TrainConfig.help()})\nconfig",
            "MD:Training, watched live: the loss, the learning rate and the WER of every eval set, redrawn at each log and "
            "evaluation (the same picture as `training_curves.png` at the end):",
            "from asr_finetuner.explore import ResultsExplorer, TrainingMonitor, TryIt\nmonitor = TrainingMonitor(config.model_name)\nmonitor.show()",
            "metrics = train(config, callbacks=[monitor])",
            "MD:Scores of the base model (step 0) and of the fine-tuned model, in %:",
            "scores_table(metrics)",
            "Image(str(config.resolved_output_dir / 'training_curves.png'))",
            "MD:Beyond the training split (what fine-tuning may have broken): each eval set's WER, text written on non-speech "
            "clips and language identification, at step 0, for the saved model (best_metric's step) and at the last step, in %:",
            "print(f\"Saved: step {metrics.kept['step']}, {metrics.kept['reason']}\" + ''.join(f'\\nWARNING: {w}' for w in metrics.warnings))\n"
            "guardrails_table(metrics)",
            "MD:Utterance by utterance, the base model (step 0) against the fine-tuned one, with word diffs: order them by the "
            "worst, the most improved, the most degraded, or show the empty outputs and the repetition loops; listen to any:",
            "ResultsExplorer.from_train(config.resolved_output_dir)",
            "MD:Try it: upload an audio file, or pick a clip of the eval split, and compare the fine-tuned model with the base "
            "model (the first clip is transcribed here already):",
            "import json\n"
            "clips = [json.loads(l)['source'] for l in open(config.resolved_output_dir / 'predictions.jsonl', encoding='utf-8')][:20]\n"
            "try_it = TryIt({'fine-tuned': config.resolved_output_dir, 'base': config.model_id}, clips, max_length=config.generation_max_length)\n"
            "try_it.pick.value = clips[0]\ntry_it.transcribe_chosen()\ntry_it",
            "MD:Exports for deployment (export_formats; or run `asr-finetuner export` on the model folder later): each one's WER "
            "through its own runtime against the saved model's, on the same clips:",
            "from asr_finetuner.export import exports_table\nexports_table(config.resolved_output_dir)",
        ]),
        "evaluate": ("Evaluate job", "Score a model on an artifact's or a dataset's eval split: WER, CER and every prediction.",
                     EvaluateConfig, {"model_id": "outputs/whisper-demo-it", "dataset_name": "builtin:sample-it",
                                      "eval_split": "test", "eval_batch_size": 32, "generation_max_length": 40}, [
            "from asr_finetuner.config import EvaluateConfig, make_config\n"
            "from asr_finetuner.evaluate import evaluate\n"
            "from asr_finetuner.reports import eval_table, show_worst",
            "MD:The parameters, validated (an invalid one stops here with a message that says what to fix). The defaults score "
            "the train notebook's model on the bundled sample's test split (sentences it never heard):",
            "config = make_config(EvaluateConfig, **{name: globals()[name] for name in EvaluateConfig.help()})\nconfig",
            "metrics = evaluate(config)",
            "MD:Scores in %, how many utterances they cover, and the decoding speed (seconds per second of audio):",
            "eval_table(metrics)",
            "print(config.resolved_output_dir)",
            "MD:The worst predictions:",
            "show_worst(config.resolved_output_dir, n=5)",
        ]),
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{job}.ipynb" for job in jobs]
    for path, (job, spec) in zip(paths, jobs.items()):
        nbformat.write(notebook(job, *spec), path)
        print("wrote", path)
    return paths


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", nargs="?", type=Path, default=JOBS, help=f"folder to write into (default: {JOBS})")
    main(parser.parse_args().out_dir)
