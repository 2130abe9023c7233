"""End-to-end tests of `load_source`: every kind of source, every expected error, streaming and the eval carve-out.

All offline (conftest sets HF_*_OFFLINE): the Hub is a local folder laid out like a Hub dataset repository
(Parquet files per config, split in the file name, configs declared in README.md as the Hub's are). Audio is
tiny WAV/FLAC made with soundfile; nothing is decoded by `datasets` (no torchcodec here).
"""
import csv, io, json
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from datasets import Audio, Dataset, DatasetDict, Features, IterableDataset, IterableDatasetDict, Value
from datasets.exceptions import DatasetNotFoundError

import asr_finetuner
from asr_finetuner.config import InputError
from asr_finetuner.sources import FEATURES, load_source

SAMPLE_DATA = Path(asr_finetuner.__file__).parent / "sample_data" / "it"


def audio_bytes(i: int, fmt: str = "WAV") -> bytes:
    "0.1 s of a tone whose pitch depends on `i`, as WAV or FLAC bytes."
    t = np.arange(1600) / 16_000
    buf = io.BytesIO()
    sf.write(buf, (0.1 * np.sin(2 * np.pi * (200 + 10 * i) * t)).astype("float32"), 16_000, format=fmt)
    return buf.getvalue()


def write_clips(folder: Path, n: int, prefix: str = "clip") -> list[str]:
    "Write `n` WAV files into `folder`; their names."
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"{prefix}{i}.wav" for i in range(n)]
    for i, name in enumerate(names): (folder / name).write_bytes(audio_bytes(i))
    return names


def rows(split) -> list[dict]:
    return list(split)



@pytest.fixture(scope="module")
def hub_repo(tmp_path_factory) -> Path:
    """A Hub-like dataset repository: config `it` (train 12, test 3; audio a plain {bytes, path} struct) and
    config `fr` (train only, 40 rows of FLAC, typed as an `Audio` feature, one transcript missing)."""
    repo = tmp_path_factory.mktemp("hub_repo")
    readme = ["---", "configs:"]
    for config, splits in (("it", {"train": 12, "test": 3}), ("fr", {"train": 40})):
        (repo / config).mkdir()
        readme += [f"- config_name: {config}", "  data_files:"]
        for split, n in splits.items():
            fmt = "FLAC" if config == "fr" else "WAV"
            table = pa.table({"audio": [{"bytes": audio_bytes(i, fmt), "path": f"{config}_{split}_{i}.{fmt.lower()}"} for i in range(n)],
                              "sentence": [None if (config, i) == ("fr", 3) else f"{config} {split} frase {i}" for i in range(n)],
                              "client_id": [f"speaker{i % 3}" for i in range(n)]})
            if config == "fr":
                table = table.cast(Features({"audio": Audio(sampling_rate=16_000), "sentence": Value("string"),
                                             "client_id": Value("string")}).arrow_schema)
            pq.write_table(table, repo / config / f"{split}-00000-of-00001.parquet")
            readme += [f"  - split: {split}", f"    path: {config}/{split}-*"]
    (repo / "README.md").write_text("\n".join(readme + ["---", "# A test dataset"]) + "\n")
    return repo


# --- Hub datasets --------------------------------------------------------------------------------------------

def test_hub_config_and_detected_splits(hub_repo):
    dd, info = load_source(str(hub_repo), "it")
    assert isinstance(dd, DatasetDict) and list(dd) == ["train", "eval"]
    assert (len(dd["train"]), len(dd["eval"])) == (12, 3)
    assert dd["train"].features == FEATURES and dd["eval"].features == FEATURES
    row = dd["eval"][1]
    assert row["text"] == "it test frase 1" and row["audio"]["path"] == "it_test_1.wav"
    samples, sr = sf.read(io.BytesIO(row["audio"]["bytes"]))
    assert sr == 16_000 and len(samples) == 1600
    assert {k: info[k] for k in ("kind", "config", "train_split", "eval_split", "audio_column", "text_column", "eval_from")} == \
        {"kind": "hub", "config": "it", "train_split": "train", "eval_split": "test", "audio_column": "audio",
         "text_column": "sentence", "eval_from": "split"}


def test_hub_dataset_config_audio_feature_and_carve_out(hub_repo):
    dd, info = load_source(str(hub_repo), language_code="xx", dataset_config="fr", seed=7)
    assert (info["config"], info["eval_split"], info["eval_from"], info["eval_fraction"], info["seed"]) == ("fr", None, "carved", 0.1, 7)
    assert (len(dd["train"]), len(dd["eval"])) == (36, 4)
    assert dd["train"].features == FEATURES  # the Audio(decode=True) feature was cast to decode=False
    texts = dd["train"]["text"][:] + dd["eval"]["text"][:]
    assert "" in texts and sorted(t for t in texts if t) == sorted(f"fr train frase {i}" for i in range(40) if i != 3)
    again, _ = load_source(str(hub_repo), dataset_config="fr", seed=7)
    assert again["eval"]["text"][:] == dd["eval"]["text"][:]


def test_hub_streaming_gives_the_same_rows(hub_repo):
    dd, info = load_source(str(hub_repo), "it", streaming=True)
    assert isinstance(dd, IterableDatasetDict) and list(dd) == ["train", "eval"]
    assert all(isinstance(dd[s], IterableDataset) and dd[s].features == FEATURES for s in dd)
    assert info["streaming"] is True
    plain, _ = load_source(str(hub_repo), "it")
    assert rows(dd["train"]) == rows(plain["train"]) and rows(dd["eval"]) == rows(plain["eval"])


def test_hub_streaming_carve_out_is_disjoint_and_stable(hub_repo):
    dd, info = load_source(str(hub_repo), dataset_config="fr", streaming=True)
    assert info["eval_from"] == "carved"
    train, ev = rows(dd["train"]), rows(dd["eval"])
    path = lambda r: r["audio"]["path"]
    assert sorted(map(path, train + ev)) == sorted(f"fr_train_{i}.flac" for i in range(40))  # each row once: none lost, none in both
    assert 1 <= len(ev) <= 8  # about a tenth (EVAL_FRACTION) of the 40 rows
    assert rows(dd["eval"]) == ev  # a second pass picks the same rows
    other, _ = load_source(str(hub_repo), dataset_config="fr", streaming=True, seed=1)
    assert {path(r) for r in rows(other["eval"])} != {path(r) for r in ev}  # the seed chooses the rows
    assert sorted(r["text"] for r in train + ev) == sorted([""] + [f"fr train frase {i}" for i in range(40) if i != 3])


def test_hub_single_default_config_ignores_language_code(tmp_path):
    (tmp_path / "data").mkdir()
    for split, n in (("train", 4), ("validation", 2)):
        pq.write_table(pa.table({"audio": [{"bytes": audio_bytes(i), "path": None} for i in range(n)],
                                 "transcription": [f"t{i}" for i in range(n)]}),
                       tmp_path / "data" / f"{split}-00000-of-00001.parquet")
    dd, info = load_source(str(tmp_path), "it")
    assert (info["config"], info["eval_split"], info["text_column"]) == ("default", "validation", "transcription")
    assert (len(dd["train"]), len(dd["eval"])) == (4, 2)


def test_hub_unknown_config_lists_configs(hub_repo):
    with pytest.raises(InputError, match=r"no config 'de'; its configs are: it, fr\. Set dataset_config"):
        load_source(str(hub_repo), "de")


def test_hub_unknown_split_lists_splits(hub_repo):
    with pytest.raises(InputError, match=r"Split 'validation' \(from eval_split\) does not exist; the splits are: train, test"):
        load_source(str(hub_repo), "it", eval_split="validation")
    with pytest.raises(InputError, match="Set train_split to one of them"):
        load_source(str(hub_repo), "it", train_split="training")


def test_hub_unreachable_offline():
    with pytest.raises(InputError, match="Could not reach the Hub for someone/no-such-dataset"):
        load_source("someone/no-such-dataset")


def test_hub_dataset_not_found(monkeypatch):
    def not_found(*a, **k): raise DatasetNotFoundError("Dataset 'someone/nope' doesn't exist on the Hub or cannot be accessed.")
    monkeypatch.setattr(datasets, "get_dataset_config_names", not_found)
    with pytest.raises(InputError, match=r"someone/nope was not found .*Check the Hub id .*HF_TOKEN"):
        load_source("someone/nope")


def test_loading_script_points_to_parquet(tmp_path):
    repo = tmp_path / "common_voice_11_0"
    repo.mkdir()
    (repo / "common_voice_11_0.py").write_text("import datasets\n\nclass CommonVoice(datasets.GeneratorBasedBuilder):\n    pass\n")
    with pytest.raises(InputError, match=r"loading script.*no longer run.*refs/convert/parquet.*Common Voice"):
        load_source(str(repo), "it")


# --- audio folders -------------------------------------------------------------------------------------------

@pytest.fixture
def audiofolder(tmp_path) -> Path:
    "train/metadata.csv (6 rows, with extra columns) and validation/metadata.jsonl (2 rows)."
    names = write_clips(tmp_path / "train", 6)
    (tmp_path / "train" / "metadata.csv").write_text(
        "file_name,transcription,speaker\n" + "".join(f"{n},frase {i},s{i % 2}\n" for i, n in enumerate(names)))
    names = write_clips(tmp_path / "validation", 2, "val")
    (tmp_path / "validation" / "metadata.jsonl").write_text(
        "".join(json.dumps({"file_name": n, "transcription": f"val {i}"}) + "\n" for i, n in enumerate(names)))
    return tmp_path


def test_audiofolder_split_folders(audiofolder):
    dd, info = load_source(str(audiofolder))
    assert (info["kind"], info["eval_split"], info["audio_column"], info["text_column"]) == \
        ("audiofolder", "validation", "file_name", "transcription")
    assert (len(dd["train"]), len(dd["eval"])) == (6, 2) and dd["train"].features == FEATURES
    row = dd["eval"][1]
    assert row == {"audio": {"bytes": None, "path": str(audiofolder / "validation" / "val1.wav")}, "text": "val 1", "speaker": ""}
    assert all(Path(r["audio"]["path"]).is_absolute() and sf.info(r["audio"]["path"]).samplerate == 16_000 for r in dd["train"])


def test_audiofolder_top_level_metadata_is_carved(tmp_path):
    names = write_clips(tmp_path, 10)
    (tmp_path / "metadata.jsonl").write_text("".join(json.dumps({"file_name": n, "text": f"t{i}"}) + "\n" for i, n in enumerate(names)))
    dd, info = load_source(str(tmp_path), language_code="it")
    assert (len(dd["train"]), len(dd["eval"])) == (9, 1)
    assert (info["train_split"], info["eval_split"], info["eval_from"], info["language_code"]) == ("train", None, "carved", "it")


def test_audiofolder_streaming(audiofolder):
    dd, _ = load_source(str(audiofolder), streaming=True)
    plain, _ = load_source(str(audiofolder))
    assert isinstance(dd, IterableDatasetDict) and dd["train"].features == FEATURES
    assert rows(dd["train"]) == rows(plain["train"]) and rows(dd["eval"]) == rows(plain["eval"])


def test_bundled_sample_data():
    "The sample ships with the package: missing, it is a failure, not a skip."
    dd, info = load_source(str(SAMPLE_DATA))
    assert (info["kind"], info["eval_split"], info["text_column"]) == ("audiofolder", "validation", "transcription")
    for split, name in (("train", "train"), ("eval", "validation")):
        with open(SAMPLE_DATA / name / "metadata.csv", encoding="utf-8", newline="") as f:
            listed = list(csv.DictReader(f))
        assert len(listed) >= 20, name
        assert [(Path(r["audio"]["path"]).name, r["text"]) for r in dd[split]] == [(r["file_name"], r["transcription"]) for r in listed]
    assert all(Path(r["audio"]["path"]).is_file() for r in dd["train"])


# --- manifests -----------------------------------------------------------------------------------------------

def test_manifest_csv_relative_paths_split_column_and_missing_file(tmp_path):
    names = write_clips(tmp_path / "clips", 4)
    (tmp_path / "lists").mkdir()
    lines = ["audio_path,sentence,split"] + [f"../clips/{n},frase {i},{'test' if i == 3 else 'train'}" for i, n in enumerate(names)]
    lines.append("../clips/gone.wav,persa,train")  # missing file: kept, the preprocess job counts it
    (tmp_path / "lists" / "all.csv").write_text("\n".join(lines) + "\n")
    dd, info = load_source(str(tmp_path / "lists" / "all.csv"))
    assert (info["kind"], info["eval_split"], info["audio_column"], info["text_column"]) == ("manifest", "test", "audio_path", "sentence")
    assert [r["audio"]["path"] for r in dd["train"]] == [str(tmp_path / "clips" / n) for n in names[:3]] + [str(tmp_path / "clips" / "gone.wav")]
    assert dd["eval"][0] == {"audio": {"bytes": None, "path": str(tmp_path / "clips" / names[3])}, "text": "frase 3", "speaker": ""}


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl"])
def test_manifest_formats_without_split_column(tmp_path, suffix):
    names = write_clips(tmp_path, 5)
    texts = [f'disse "ciao {i}' if suffix == ".tsv" else f"ciao {i}" for i in range(5)]  # TSV: quotes are text
    if suffix == ".jsonl":
        body = "".join(json.dumps({"path": n, "text": t}) + "\n" for n, t in zip(names, texts))
    else:
        sep = "\t" if suffix == ".tsv" else ","
        body = f"path{sep}text\n" + "".join(f"{n}{sep}{t}\n" for n, t in zip(names, texts))
    (tmp_path / f"m{suffix}").write_text(body, encoding="utf-8")
    dd, info = load_source(str(tmp_path / f"m{suffix}"))
    assert info["eval_from"] == "carved" and (len(dd["train"]), len(dd["eval"])) == (4, 1)
    assert sorted(dd["train"]["text"][:] + dd["eval"]["text"][:]) == sorted(texts)


def test_manifest_given_columns_and_null_text(tmp_path):
    (tmp_path / "m.jsonl").write_text('{"wav": "/abs/a.wav", "words": "uno", "text": "x"}\n'
                                      '{"wav": "b.wav", "words": null, "text": "y"}\n{"wav": "c.wav", "words": 3, "text": "z"}\n')
    dd, info = load_source(str(tmp_path / "m.jsonl"), audio_column="wav", text_column="words", eval_split=None)
    got = {r["audio"]["path"]: r["text"] for r in list(dd["train"]) + list(dd["eval"])}
    assert got == {"/abs/a.wav": "uno", str(tmp_path / "b.wav"): "", str(tmp_path / "c.wav"): "3"}
    assert (info["audio_column"], info["text_column"]) == ("wav", "words")


def test_manifest_not_utf8(tmp_path):
    (tmp_path / "latin1.csv").write_bytes("path,text\na.wav,perché così\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"latin1\.csv is not UTF-8 text .*re-encode it as UTF-8"):
        load_source(str(tmp_path / "latin1.csv"))


# --- datasets saved with save_to_disk ------------------------------------------------------------------------

def test_saved_dataset_dict_with_struct_audio(tmp_path):
    def split(n): return Dataset(pa.table({"audio": [{"bytes": audio_bytes(i), "path": f"{i}.wav"} for i in range(n)],
                                           "transcript": [f"t{i}" for i in range(n)], "duration": [0.1] * n}))
    DatasetDict({"train": split(5), "dev": split(2)}).save_to_disk(tmp_path / "saved")
    before = sorted(p.name for p in (tmp_path / "saved").rglob("*"))
    dd, info = load_source(str(tmp_path / "saved"))
    assert (info["kind"], info["eval_split"], info["text_column"]) == ("saved", "dev", "transcript")
    assert dd["train"].features == FEATURES and dd["eval"][1]["audio"]["bytes"] == audio_bytes(1)
    assert sorted(p.name for p in (tmp_path / "saved").rglob("*")) == before  # nothing written into the user's folder


def test_saved_dataset_with_audio_feature_carved(tmp_path):
    ds = Dataset(pa.table({"audio": [{"bytes": audio_bytes(i), "path": None} for i in range(10)], "text": [f"t{i}" for i in range(10)]}))
    ds.cast_column("audio", Audio(sampling_rate=16_000)).save_to_disk(tmp_path / "saved")
    before = sorted(p.name for p in (tmp_path / "saved").rglob("*"))
    dd, info = load_source(str(tmp_path / "saved"))
    assert (info["train_split"], info["eval_from"], len(dd["train"]), len(dd["eval"])) == ("train", "carved", 9, 1)
    assert dd["eval"].features == FEATURES
    assert sorted(p.name for p in (tmp_path / "saved").rglob("*")) == before


def test_saved_dataset_with_path_strings(tmp_path):
    names = write_clips(tmp_path / "clips", 3)
    Dataset.from_dict({"path": [str(tmp_path / "clips" / n) for n in names], "sentence": ["a", None, "c"]}).save_to_disk(tmp_path / "saved")
    dd, _ = load_source(str(tmp_path / "saved"), streaming=True)
    got = rows(dd["train"]) + rows(dd["eval"])
    assert sorted((r["audio"]["path"], r["text"]) for r in got) == sorted(zip([str(tmp_path / "clips" / n) for n in names], ["a", "", "c"]))


# --- column and input errors ---------------------------------------------------------------------------------

@pytest.fixture
def manifest(tmp_path) -> Path:
    (tmp_path / "m.csv").write_text("file,label,speaker\na.wav,3,s1\nb.wav,4,s2\n")
    return tmp_path / "m.csv"


def test_given_column_that_does_not_exist(manifest):
    with pytest.raises(InputError, match=r"Column 'wav' \(from audio_column\) is not in the dataset, whose columns are: file, label, speaker"):
        load_source(str(manifest), audio_column="wav", text_column="label")


def test_no_detectable_text_column(manifest):
    with pytest.raises(InputError, match=r"No column for the transcripts found among the dataset's columns \(file, label, speaker;.*Set text_column"):
        load_source(str(manifest))


def test_text_column_that_is_not_text(tmp_path):
    DatasetDict({"train": Dataset.from_dict({"audio": ["a.wav", "b.wav"], "text": [1, 2]})}).save_to_disk(tmp_path / "saved")
    with pytest.raises(InputError, match="Column 'text' holds Value\\('int64'\\), not text: set text_column"):
        load_source(str(tmp_path / "saved"))


def test_missing_local_path(tmp_path):
    with pytest.raises(InputError, match="does not exist: check the path"):
        load_source(str(tmp_path / "nothing.csv"))


def test_eval_split_same_as_train(audiofolder):
    with pytest.raises(InputError, match="train_split and eval_split are both 'train'"):
        load_source(str(audiofolder), eval_split="train")


def test_carve_out_of_one_row(tmp_path):
    (tmp_path / "one.csv").write_text("path,text\na.wav,ciao\n")
    with pytest.raises(InputError, match="Cannot carve an eval split out of 1 training row"):
        load_source(str(tmp_path / "one.csv"))


def test_speaker_column_detected_in_the_bundled_sample_and_named_elsewhere(tmp_path, sample_dir):
    dd, info = load_source(str(sample_dir))
    assert info["speaker_column"] == "speaker" and set(dd["train"]["speaker"]) == {"festival_lp", "festival_pc", "espeak-ng_it"}
    dd, info = load_source(str(sample_dir), speaker_column="sentence_id")
    assert info["speaker_column"] == "sentence_id" and dd["train"][0]["speaker"] == "S001"
    with pytest.raises(InputError, match="Column 'nobody' \\(from speaker_column\\) is not in the dataset"):
        load_source(str(sample_dir), speaker_column="nobody")


def test_info_is_json_and_holds_no_token(hub_repo, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token_123")
    _, info = load_source(str(hub_repo), "it", revision=None)
    text = json.dumps(info)
    assert json.loads(text) == info and "hf_not_a_real_token_123" not in text
    assert set(info) == {"kind", "dataset_name", "config", "revision", "language_code", "train_split", "eval_split",
                         "audio_column", "text_column", "speaker_column", "eval_from", "eval_fraction", "seed", "streaming"}
