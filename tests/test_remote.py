"""Artifacts on object storage: a real S3 server (moto's, on 127.0.0.1, started once for the module) holds an
artifact that preprocess writes, and train and evaluate read on a "machine" with no local copy of it."""
import os, socket

import pytest

from asr_finetuner import artifacts as arts
from asr_finetuner.evaluate import evaluate
from asr_finetuner.preprocess import preprocess
from asr_finetuner.train import train

pytest.importorskip("s3fs", reason="the distributed extra is part of dev: pip install -e '.[dev]'")
moto_server = pytest.importorskip("moto.server", reason="moto[server] is part of dev")
pytestmark = pytest.mark.xdist_group("remote")


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    "An S3-compatible server on 127.0.0.1 with a bucket, credentials in the environment as a user would set them."
    with socket.socket() as s: s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {"AWS_ACCESS_KEY_ID": "test-key-id", "AWS_SECRET_ACCESS_KEY": "test-secret-key-never-logged", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    import s3fs
    s3fs.S3FileSystem.clear_instance_cache()
    s3fs.S3FileSystem().mkdir("asr-bucket")
    yield "s3://asr-bucket/artifacts"
    for k, v in old.items():
        if v is None: os.environ.pop(k, None)
        else: os.environ[k] = v
    server.stop()


def test_an_artifact_round_trip_through_s3(s3, tiny_model_dir, sample_dir, tmp_path, monkeypatch):
    "Preprocess writes to the store; on a machine without a local copy, train and evaluate read it, as the same content."
    common = dict(artifact_name="it-s3", model_id=str(tiny_model_dir), dataset_name=str(sample_dir), max_train_samples=8, max_eval_samples=4, num_proc=1)
    monkeypatch.setenv("ASR_FINETUNER_ARTIFACTS", str(tmp_path / "writer"))
    written = preprocess(artifacts_dir=s3, **common)
    local = preprocess(artifacts_dir=str(tmp_path / "plain"), **common)
    assert written.fingerprint == local.fingerprint  # the same artifact as on local disk
    fs, root = arts.remote_root(s3)
    listed = sorted(p.rsplit("/", 1)[-1] for p in fs.ls(f"{root}/it-s3", detail=False))
    assert listed == [f"data-{written.fingerprint[:16]}", "manifest.json"]
    with pytest.raises(arts.InputError, match="already exists at s3://asr-bucket/artifacts"): preprocess(artifacts_dir=s3, **common)
    monkeypatch.setenv("ASR_FINETUNER_ARTIFACTS", str(tmp_path / "reader"))  # another machine
    m = train(model_name="tiny-s3", model_id=str(tiny_model_dir), dataset_name=str(sample_dir), artifact_name="it-s3", artifacts_dir=s3,
              output_dir=str(tmp_path / "model"), max_steps=2, eval_steps=2, save_steps=2, logging_steps=1, warmup_steps=0,
              train_batch_size=4, eval_batch_size=4, generation_max_length=8)
    assert m.artifact_fingerprint == written.fingerprint and m.steps == 2
    e = evaluate(model_id=str(tmp_path / "model"), artifact_name="it-s3", artifacts_dir=s3, output_dir=str(tmp_path / "eval"), generation_max_length=8)
    assert e.num_utterances == 4
    for path in (tmp_path / "model").rglob("*"):  # the credentials stay in the environment
        if path.is_file() and path.suffix in (".json", ".md", ".jsonl", ".ipynb", ".yaml"):
            assert "test-secret-key-never-logged" not in path.read_text(errors="ignore"), path


def test_an_upload_cut_off_before_its_manifest_leaves_the_last_artifact_whole(s3, tmp_path, monkeypatch):
    "The data goes first under a prefix of its own, the manifest last: a cut-off overwrite changes nothing a reader sees."
    import datasets
    monkeypatch.setenv("ASR_FINETUNER_ARTIFACTS", str(tmp_path / "writer"))
    def make(n):
        local = arts.artifact_path("it-cut", s3)
        ds = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"x": list(range(n))})})
        with arts.staged_artifact(local, "overwrite") as staging:
            ds.save_to_disk(str(staging))
            arts.write_manifest(staging, arts.Manifest(**{**EXAMPLE, "fingerprint": arts.content_fingerprint(ds)}))
        return local
    arts.push_artifact(make(3), s3)
    fs = arts.remote_root(s3)[0]  # fsspec's cached instance: the one push_artifact uses
    def cut(path, *a, **k):
        if path.endswith("manifest.json"): raise ConnectionError("connection reset")
        return pipe(path, *a, **k)
    pipe = fs.pipe_file
    monkeypatch.setattr(fs, "pipe_file", cut)
    with pytest.raises(ConnectionError): arts.push_artifact(make(5), s3, if_exists="overwrite")
    monkeypatch.undo()
    monkeypatch.setenv("ASR_FINETUNER_ARTIFACTS", str(tmp_path / "reader"))
    dd, manifest = arts.load_artifact("it-cut", s3)
    assert len(dd["train"]) == 3  # the previous artifact, whole
    with pytest.raises(arts.InputError, match="No artifact it-never at s3://"): arts.load_artifact("it-never", s3)


EXAMPLE = {"artifact_name": "it-cut", "created_at": "2026-12-01T00:00:00+00:00", "parameters": {}, "source": {}, "model_id": "tiny",
           "language": "Italian", "language_code": "it", "whisper_language": "it", "task": "transcribe", "label_prefix": [50258, 50274, 50359, 50363],
           "max_sequence_length": 255, "feature_extractor": {}, "n_mels": 80, "tokenizer": {}, "splits": {}, "features": {}, "versions": {},
           "seconds": 1.0, "fingerprint": ""}


def test_two_nodes_train_on_one_remote_artifact(s3, tiny_model_dir, sample_dir, tmp_path, monkeypatch):
    "Two torchrun nodes on 127.0.0.1 (gloo), each with its own disk, train on an artifact neither preprocessed."
    import json, subprocess, sys
    from pathlib import Path
    from asr_finetuner.train_outputs import TrainMetrics
    monkeypatch.setenv("ASR_FINETUNER_ARTIFACTS", str(tmp_path / "writer"))
    preprocess(artifact_name="it-nodes", model_id=str(tiny_model_dir), dataset_name=str(sample_dir), artifacts_dir=s3, max_train_samples=8,
               max_eval_samples=4, num_proc=1)
    with socket.socket() as s: s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
    bin_dir = Path(sys.executable).parent
    args = {"model_name": "tiny-nodes", "model_id": str(tiny_model_dir), "dataset_name": str(sample_dir), "artifact_name": "it-nodes",
            "artifacts_dir": s3, "output_dir": str(tmp_path / "model"), "max_steps": 2, "eval_steps": 2, "save_steps": 2, "logging_steps": 1,
            "warmup_steps": 0, "train_batch_size": 2, "eval_batch_size": 4, "generation_max_length": 8}
    nodes = [subprocess.Popen([str(bin_dir / "torchrun"), "--nnodes", "2", "--node_rank", str(rank), "--nproc_per_node", "1",
                               "--master_addr", "127.0.0.1", "--master_port", str(port), str(bin_dir / "asr-finetuner"), "train",
                               *[a for k, v in args.items() for a in (f"--{k}", str(v))]],
                              env={**os.environ, "OMP_NUM_THREADS": "1", "ASR_FINETUNER_ARTIFACTS": str(tmp_path / f"node{rank}")},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for rank in (0, 1)]
    outs = [n.communicate(timeout=600) for n in nodes]
    assert [n.returncode for n in nodes] == [0, 0], [o[1][-2000:] for o in outs]
    assert sum(o[0].count("Model tiny-nodes saved to") for o in outs) == 1  # the first node's first process writes the outputs
    m = TrainMetrics.read(tmp_path / "model" / "metrics.json")
    state = json.loads((tmp_path / "model" / "checkpoint-2" / "trainer_state.json").read_text())
    assert m.steps == 2 and state["train_batch_size"] == 2
    for rank in (0, 1): assert list((tmp_path / f"node{rank}" / ".remote").glob("*/it-nodes/manifest.json"))  # each node read its own copy
