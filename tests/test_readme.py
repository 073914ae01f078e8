"""The README's Python examples run as written (with fewer training steps)."""
import os
import re

import jax.numpy as jnp

README = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "README.md"))


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    text = open(README).read()
    monkeypatch.chdir(tmp_path)   # the examples write run directories
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 2
    code = "\n".join(blocks).replace("steps=2000", "steps=20")
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["x0"].shape == (1000, 2)
    assert int(namespace["state"].step) == 20
    assert namespace["x_gan"].shape == (1000, 2) and int(namespace["gan_state"].step) == 20
    assert int(namespace["stats"]["nfe"]) == 201 and namespace["xg"].shape == (1000, 2)
    assert int(namespace["stats3m"]["nfe"]) == 21 and bool(jnp.all(jnp.isfinite(namespace["x3m"])))
    info = namespace["info"]
    assert float(info["best_loss"]) < 0.5 * float(info["init_loss"]) and namespace["x_tuned"].shape == (1000, 2)


def test_readme_sampler_table_is_the_registry():
    from genflow.samplers import registry

    text = open(README).read()
    table = re.search(r"<!-- sampler-table -->\n(.*?)\n<!-- /sampler-table -->", text, flags=re.S)
    assert table is not None and table.group(1).strip() == registry.markdown_table().strip(), \
        "README's sampler table is out of date: paste genflow.samplers.registry.markdown_table()"


def test_readme_commands_match_ci():
    text = open(README).read()
    bash = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    assert "genflow train" in bash[0] and "pytest" in bash[1]
    ci = open(os.path.join(os.path.dirname(__file__), "..", ".ci", "run")).read()
    assert "pip install -q -e '.[test]'" in ci and "python -m pytest -q" in ci
