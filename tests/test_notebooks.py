"""Every notebook in notebooks/ runs top to bottom in its fast setting (GENFLOW_FAST=1).

Code cells are executed in order in one namespace, so a notebook's own asserts fail the suite.
"""
import glob
import json
import os

import matplotlib
import pytest

matplotlib.use("Agg")

NOTEBOOKS = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "notebooks", "*.ipynb")))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[os.path.basename(p) for p in NOTEBOOKS])
def test_notebook_executes(path, monkeypatch, tmp_path):
    monkeypatch.setenv("GENFLOW_FAST", "1")
    monkeypatch.chdir(tmp_path)
    cells = json.load(open(path))["cells"]
    code = [("".join(c["source"]) if isinstance(c["source"], list) else c["source"])
            for c in cells if c["cell_type"] == "code"]
    namespace = {"__name__": "__main__"}
    for i, src in enumerate(code):
        src = "\n".join(line for line in src.splitlines() if not line.lstrip().startswith(("%", "!")))
        exec(compile(src, f"{os.path.basename(path)}[cell {i}]", "exec"), namespace)
    import matplotlib.pyplot as plt

    plt.close("all")
