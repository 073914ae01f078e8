"""Execute notebooks in place and store their outputs (text, and figures as PNG), without Jupyter.

Each code cell runs in one shared namespace, the way ``tests/test_notebooks.py`` runs them; what
a cell prints becomes a stream output, its last expression (if any) an execute_result, and every
matplotlib figure it leaves open a PNG display_data. ``GENFLOW_FAST=1`` runs the fast settings the
test suite uses; without it the notebooks run their full settings (the committed outputs).

    python notebooks/execute.py notebooks/01_ddpm.ipynb [...]       # full settings, in place
"""
from __future__ import annotations

import ast
import base64
import contextlib
import io
import json
import os
import sys
import tempfile
import time


def _figures() -> list[dict]:
    import matplotlib.pyplot as plt

    out = []
    for num in plt.get_fignums():
        buf = io.BytesIO()
        plt.figure(num).savefig(buf, format="png", dpi=90, bbox_inches="tight")
        out.append({"output_type": "display_data", "metadata": {},
                    "data": {"image/png": base64.b64encode(buf.getvalue()).decode("ascii"),
                             "text/plain": ["<Figure>"]}})
    plt.close("all")
    return out


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def execute(path: str) -> float:
    """Run every code cell of ``path`` and write the outputs into it. Returns the seconds taken."""
    import matplotlib

    matplotlib.use("Agg")
    nb = json.load(open(path))
    namespace = {"__name__": "__main__"}
    start, count = time.perf_counter(), 0
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as work:
        os.chdir(work)   # notebooks write run directories; keep them out of the checkout
        try:
            for cell in nb["cells"]:
                if cell["cell_type"] != "code":
                    continue
                src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
                src = "\n".join(line for line in src.splitlines() if not line.lstrip().startswith(("%", "!")))
                tree = ast.parse(src)
                last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
                out, outputs, value = io.StringIO(), [], None
                count += 1
                with contextlib.redirect_stdout(out):
                    exec(compile(tree, f"{os.path.basename(path)}[cell {count}]", "exec"), namespace)
                    if last is not None:
                        value = eval(compile(ast.Expression(last.value), "<last>", "eval"), namespace)
                if out.getvalue():
                    outputs.append({"output_type": "stream", "name": "stdout", "text": _lines(out.getvalue())})
                if value is not None and not type(value).__module__.startswith("matplotlib"):
                    outputs.append({"output_type": "execute_result", "execution_count": count, "metadata": {},
                                    "data": {"text/plain": _lines(repr(value))}})
                outputs += _figures()
                cell["outputs"], cell["execution_count"] = outputs, count
        finally:
            os.chdir(cwd)
    with open(path, "w") as f:
        json.dump(nb, f, indent=1, ensure_ascii=True)
        f.write("\n")
    return time.perf_counter() - start


if __name__ == "__main__":
    for p in sys.argv[1:]:
        print(f"{p}: {execute(p):.0f} s", file=sys.stderr)
