"""The four widgets rendered in a real browser, as a person would use them: JupyterLab on 127.0.0.1 with a token, Debian's
Chromium driven headless by Playwright, one notebook that builds all four on small outputs of the bundled sample, run
from the Run menu. Screenshots go to a temporary folder (ASR_FINETUNER_SCREENSHOTS names another: `make screenshots`)."""
import json, os, shutil, socket, subprocess, sys, time
from pathlib import Path

import nbformat
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.skipif(not CHROMIUM, reason="no Chromium on this machine (apt install chromium): the browser test "
                                                     "did not run; .ci/run installs it"),
              pytest.mark.xdist_group("widgets")]  # with test_explore: the session's widget_run is built once

CELLS = [
    "from asr_finetuner.explore import ArtifactExplorer, ResultsExplorer, TrainingMonitor, TryIt\nimport json, pathlib",
    "ArtifactExplorer({artifact!r}, {arts!r})",
    "monitor = TrainingMonitor('tiny-it')\nstate = json.loads(pathlib.Path({state!r}).read_text())\nmonitor.redraw(state['log_history'])\nmonitor",
    "ResultsExplorer.from_train({out!r})",
    "try_it = TryIt({{'fine-tuned': {out!r}, 'base': {base!r}}}, [{clip!r}], max_length=12)\ntry_it.pick.value = {clip!r}\n"
    "try_it.transcribe_chosen()\ntry_it",
]


@pytest.fixture
def outputs(widget_run):
    "The session's small artifact of the sample and short training on it (conftest.py): what the widgets show."
    return widget_run


def free_port()->int:
    with socket.socket() as s: s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


@pytest.fixture
def lab(outputs, tiny_model_dir, sample_dir, tmp_path):
    "JupyterLab serving a folder with the widgets notebook; yields its notebook URL."
    clip = str(next((sample_dir / "test").glob("*.ogg")))
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c.format(artifact=outputs["artifact"], arts=str(outputs["arts"]), out=str(outputs["out"]), clip=clip,
                                                                             base=str(tiny_model_dir), state=str(outputs["out"] / "checkpoint-4" / "trainer_state.json")))
                                         for c in CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}  # no kernel dialog
    root = tmp_path / "lab"; root.mkdir()
    nbformat.write(nb, root / "widgets.ipynb")
    settings = tmp_path / "settings" / "@jupyterlab" / "apputils-extension"; settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    port, token = free_port(), "asr-finetuner-test"
    env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    server = subprocess.Popen([sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
                               f"--IdentityProvider.token={token}", "--allow-root", f"--ServerApp.root_dir={root}"],
                              stdout=open(tmp_path / "lab.log", "w"), stderr=subprocess.STDOUT, env=env)
    deadline = time.time() + 60
    while time.time() < deadline:
        try: socket.create_connection(("127.0.0.1", port), timeout=1).close(); break
        except OSError: time.sleep(0.5)
    yield f"http://127.0.0.1:{port}/lab/tree/widgets.ipynb?token={token}"
    server.terminate(); server.wait(timeout=30)


def test_the_four_widgets_render_and_respond_in_a_browser(lab, outputs, tmp_path):
    from playwright.sync_api import sync_playwright
    shots = Path(os.environ.get("ASR_FINETUNER_SCREENSHOTS") or tmp_path / "screenshots"); shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try: check_widgets(page, lab, outputs, shots)
        except Exception:
            page.screenshot(path=str(shots / "failure.png")); print(f"screenshot of the failure: {shots / 'failure.png'}")
            raise
        finally: browser.close()
    assert {p.name for p in shots.glob("*.png")} >= {"artifact-explorer.png", "training-monitor.png", "results-explorer.png", "try-it.png"}


def check_widgets(page, lab, outputs, shots):
    "Run the notebook from the Run menu, then check each widget; screenshots into `shots`."
    from asr_finetuner.explore import compare_predictions, results_view
    from asr_finetuner.scoring import read_predictions
    page.goto(lab)
    page.wait_for_selector(".jp-Notebook", timeout=90_000)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=90_000)
    page.wait_for_selector("text=Python 3 (ipykernel) | Idle", timeout=90_000)  # the kernel is up and connected
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    # 1. artifact explorer: the histogram, the row's tokens and log-mel image, an audio player with a source
    page.wait_for_selector("img.asr-hist", timeout=120_000)
    assert page.locator(".asr-row-detail .asr-special").count() >= 3 and page.locator("img.asr-mel").first.is_visible()
    # 2. the monitor: the curves' points, drawn as SVG markers
    page.wait_for_selector(".asr-monitor svg", timeout=120_000)
    points = page.locator(".asr-monitor svg g[id^='points-'] use").count()  # each curve's markers
    assert points == 4 + 2 * 3, points  # 4 losses; 3 evaluations, raw and normalised WER
    # 3. the results explorer re-sorts on a click: the rows of each view, in the order the library gives
    page.wait_for_selector("table.asr-results", timeout=120_000)
    order = lambda: page.locator("table.asr-results tr.asr-row").evaluate_all("rows => rows.map(r => r.dataset.source)")
    df = compare_predictions(read_predictions(outputs["out"] / "predictions_step_0.jsonl"), read_predictions(outputs["out"]))
    assert order() == list(results_view(df, "worst").source) and len(df) == 6
    for view in ("most improved", "most degraded", "worst"):
        page.get_by_role("button", name=view, exact=True).click()
        page.wait_for_selector(f"table.asr-results[data-view='{view}']", timeout=30_000)
        assert order() == list(results_view(df, view).source), view
    # 4. try it: both models' transcripts of the picked clip, and its player
    page.wait_for_selector("table.asr-tryit", timeout=120_000)
    assert page.locator("table.asr-tryit td b").all_inner_texts() == ["fine-tuned", "base"]
    sources = page.locator("audio").evaluate_all("els => els.map(e => e.src)")
    assert len(sources) >= 3 and all(s.startswith("blob:") for s in sources), sources  # explorer, results, try it
    for name, selector in (("artifact-explorer", ".asr-row-detail"), ("training-monitor", ".asr-monitor"),
                           ("results-explorer", "table.asr-results"), ("try-it", "table.asr-tryit")):
        widget = page.locator(selector).first.locator("xpath=ancestor::div[contains(@class, 'jp-OutputArea-output')][1]")
        widget.scroll_into_view_if_needed()
        widget.screenshot(path=str(shots / f"{name}.png"))
    page.screenshot(path=str(shots / "notebook.png"))
