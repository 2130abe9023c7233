#!/usr/bin/env python
"""Write notebooks from percent-format Python files, and back.

Notebooks are JSON; this keeps editing them plain. The `.ipynb` stays the source of truth:
convert it out, edit, convert it back, then `nbdev_clean` and `nbdev_export`.

    python scripts/nbpy.py to-py nbs/00_config.ipynb /tmp/00_config.py    # out, to a scratch file
    python scripts/nbpy.py to-nb /tmp/00_config.py nbs/00_config.ipynb    # and back, after editing it

Cells start with `# %%`; `# %% [markdown]` marks a markdown cell (each line prefixed by `# `);
`# %% tags=["parameters"]` sets cell tags; `id=...` keeps a cell's id (new cells get one from nbdev_clean).
"""
import json, re, sys, uuid
import nbformat

_HEAD = re.compile(r'^# %%(?P<md> \[markdown\])?(?: tags=(?P<tags>\[.*?\]))?(?: id=(?P<id>[\w-]+))?\s*$')

def py_to_nb(text: str) -> nbformat.NotebookNode:
    "Parse percent-format `text` into a notebook."
    nb = nbformat.v4.new_notebook()
    nb.nbformat_minor = 5
    nb.metadata = {"kernelspec": {"display_name": "python3", "language": "python", "name": "python3"}}
    cells, cur = [], None
    for line in text.splitlines():
        m = _HEAD.match(line)
        if m:
            cur = {"md": bool(m["md"]), "tags": json.loads(m["tags"]) if m["tags"] else [], "id": m["id"], "lines": []}
            cells.append(cur)
        elif cur is not None: cur["lines"].append(line)
    for c in cells:
        lines = c["lines"]
        while lines and not lines[-1].strip(): lines.pop()
        while lines and not lines[0].strip(): lines.pop(0)
        if c["md"]:
            src = "\n".join(l[2:] if l.startswith("# ") else l.lstrip("#") for l in lines)
            cell = nbformat.v4.new_markdown_cell(src)
        else: cell = nbformat.v4.new_code_cell("\n".join(lines))
        if c["tags"]: cell.metadata["tags"] = c["tags"]
        if c["id"]: cell["id"] = c["id"]  # kept, so that exported modules do not change for nothing
        else: cell["id"] = uuid.uuid4().hex[:8]
        nb.cells.append(cell)
    return nb

def nb_to_py(nb) -> str:
    "Render notebook `nb` as percent-format text."
    out = []
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags")
        head = ("# %%" + (" [markdown]" if cell.cell_type == "markdown" else "") + (f" tags={json.dumps(tags)}" if tags else "")
                + (f" id={cell['id']}" if cell.get("id") else ""))
        body = cell.source
        if cell.cell_type == "markdown": body = "\n".join(("# " + l) if l else "#" for l in body.splitlines())
        out.append(head + "\n" + body + "\n")
    return "\n".join(out)

if __name__ == "__main__":
    cmd, src, dst = sys.argv[1:4]
    if cmd == "to-nb":
        nb = py_to_nb(open(src, encoding="utf-8").read())
        nbformat.write(nb, dst)
    elif cmd == "to-py":
        open(dst, "w", encoding="utf-8").write(nb_to_py(nbformat.read(src, as_version=4)))
    else: sys.exit(f"unknown command {cmd!r}: use to-nb or to-py")
