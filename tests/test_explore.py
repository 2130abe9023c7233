"""The Jupyter widgets on real outputs of the bundled sample, in-process: the artifact explorer, the live monitor fed
by a real training, the results explorer on the train job's step-0 and final predictions, the upload path of
"try it", and the metrics as `evaluate` modules."""
import io, json
from datetime import datetime, timezone

import pytest
import soundfile as sf

from asr_finetuner.explore import ArtifactExplorer, ResultsExplorer, TryIt, VIEWS

pytestmark = pytest.mark.xdist_group("widgets")  # with test_browser: the session's widget_run is built once


@pytest.fixture
def run(widget_run):
    "The session's small packed artifact and 4-step training, watched by the monitor (conftest.py)."
    return widget_run


def test_artifact_explorer_browses_rows_with_tokens_image_and_audio(run):
    ex = ArtifactExplorer(run["artifact"], str(run["arts"]))
    assert "rows in" in ex.summary.value and 'class="asr-hist" src="data:image/png;base64,' in ex.summary.value
    assert "&lt;|startoftranscript|&gt;" in ex.detail.value and "asr-ts" in ex.detail.value  # packed with timestamps: marked tokens
    assert 'class="asr-mel" src="data:image/png' in ex.detail.value
    assert type(ex.player.children[0]).__name__ == "Audio"  # the sample's source clips are at hand (a packed window's, joined)
    ex.split.value = "eval"; ex.row.value = 2
    assert "eval row 2" in ex.detail.value and "eval row 2" in ex._repr_mimebundle_()["text/html"]


def test_monitor_follows_training_and_ends_with_the_saved_curves(run):
    monitor, m = run["monitor"], run["metrics"]
    state = json.loads((run["out"] / "checkpoint-4" / "trainer_state.json").read_text())
    assert [h for h in monitor.history if "loss" in h] == [h for h in state["log_history"] if "loss" in h]
    assert [e["step"] for e in m.evaluations] == [0, 2, 4] and "step 4" in monitor.view.value
    assert monitor.view.value.count("<svg") == 1 and monitor._repr_mimebundle_()["text/html"] == monitor.view.value


def test_results_explorer_compares_step_0_with_the_saved_model(run):
    ex = ResultsExplorer.from_train(run["out"])
    assert len(ex.df) == 6 and set(ex.views.options) == set(VIEWS)
    before = [o[1] for o in ex.pick.options]
    ex.views.value = "most degraded"
    assert all(c > 0 for c in ex.shown.change) and [o[1] for o in ex.pick.options] == list(ex.shown.source)
    ex.views.value = "worst"
    assert [o[1] for o in ex.pick.options] == before and ex.table.value.count('class="asr-row"') == 6
    assert type(ex.player.children[0]).__name__ == "Audio"
    assert (run["out"] / "predictions_step_0.jsonl").is_file()


def test_try_it_transcribes_an_upload_with_both_models(run, tiny_model_dir, sample_dir):
    clip = next((sample_dir / "test").glob("*.ogg"))
    x, rate = sf.read(clip, dtype="float32")
    buf = io.BytesIO(); sf.write(buf, x, rate, format="WAV")
    tryit = TryIt({"fine-tuned": str(run["out"]), "base": str(tiny_model_dir)}, clips=[str(clip)], max_length=16)
    assert tryit.transcribe_chosen() == {} and "upload a file" in tryit.result.value
    tryit.upload.value = ({"name": "mine.wav", "type": "audio/wav", "size": len(buf.getvalue()), "content": memoryview(buf.getvalue()),
                           "last_modified": datetime.now(timezone.utc)},)
    out = tryit.transcribe_chosen()
    assert set(out) == {"fine-tuned", "base"} and all(r["duration"] == pytest.approx(len(x) / rate, abs=0.01) for r in out.values())
    assert "mine.wav" in tryit.result.value and "<b>fine-tuned</b>" in tryit.result.value and "<b>base</b>" in tryit.result.value
    tryit.upload.value = ()
    tryit.pick.value = str(clip)
    assert set(tryit.transcribe_chosen()) == {"fine-tuned", "base"} and clip.name in tryit.result.value


def test_evaluate_modules_score_as_the_train_job_did(run, tmp_path):
    import evaluate
    from asr_finetuner.scoring import read_predictions
    from asr_finetuner.metric_modules import METRICS, metric_path
    preds = read_predictions(run["out"])
    hyps, refs = [p["prediction"] for p in preds], [p["reference"] for p in preds]
    for name in METRICS:
        got = evaluate.load(metric_path(name, tmp_path)).compute(predictions=hyps, references=refs)[name]
        assert got == pytest.approx(run["metrics"].final[name], abs=1e-12), name
