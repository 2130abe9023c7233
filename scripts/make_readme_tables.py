#!/usr/bin/env python
"""Write the README's parameter tables from the jobs' parameter sets in `asr_finetuner.config`.

The tables sit between two markers in README.md; everything else in the README is left as it is.
Run after changing a parameter set (`make export` does); `--check` only says whether the README is up
to date (exit code 1 if not), and tests/test_readme.py checks the same without writing anything:

    .venv/bin/python scripts/make_readme_tables.py            # rewrite the tables in README.md
    .venv/bin/python scripts/make_readme_tables.py --check    # exit 1 if they differ from the dataclasses
"""
import argparse, sys
from dataclasses import MISSING, fields
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
BEGIN = "<!-- parameter tables: generated from asr_finetuner/config.py by scripts/make_readme_tables.py; do not edit by hand -->"
END = "<!-- end of the generated parameter tables -->"


def default_cell(f):
    "How the table shows a field's default: `required`, `-` for none, else the value in backticks."
    if f.default is MISSING: return "required"
    return "-" if f.default is None else f"`{f.default}`"


def parameter_table(cls):
    "The Markdown table of one parameter set: name, default and help of each field, in the dataclass's order."
    rows = [f"| `{f.name}` | {default_cell(f)} | {f.metadata.get('help', '').replace('|', '/')} |" for f in fields(cls)]
    return "\n".join([f"#### {cls.__name__}", "", "| parameter | default | meaning |", "|---|---|---|", *rows])


def parameter_tables():
    "The tables of the four parameter sets, in the order of the jobs."
    from asr_finetuner.config import EvaluateConfig, ExportConfig, PreprocessConfig, TrainConfig, TranscribeConfig
    return "\n\n".join(parameter_table(cls) for cls in (PreprocessConfig, TrainConfig, EvaluateConfig, TranscribeConfig, ExportConfig))


def with_tables(text):
    "`text` (the README) with the part between the markers replaced by the current tables."
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise ValueError(f"README.md must hold the markers {BEGIN!r} and {END!r}, once each and in this order.")
    head, rest = text.split(BEGIN)
    _, tail = rest.split(END)
    return f"{head}{BEGIN}\n\n{parameter_tables()}\n\n{END}{tail}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if the README's tables are out of date")
    parser.add_argument("--readme", type=Path, default=README, help=f"the README to update (default: {README})")
    args = parser.parse_args(argv)
    text = args.readme.read_text(encoding="utf-8")
    new = with_tables(text)
    if args.check:
        if new != text: sys.exit(f"{args.readme}: the parameter tables are out of date: run scripts/make_readme_tables.py")
        return print(f"{args.readme}: the parameter tables are up to date")
    if new != text: args.readme.write_text(new, encoding="utf-8")
    print(("rewrote" if new != text else "unchanged:"), f"the parameter tables in {args.readme}")


if __name__ == "__main__":
    main()
