"""genflow's cache directory ($GENFLOW_CACHE, else ~/.cache/genflow): downloaded weights, and
XLA's persistent compilation cache, so a resumed or repeated run starts without recompiling."""
from __future__ import annotations

import os


def cache_dir() -> str:
    """$GENFLOW_CACHE, else ~/.cache/genflow."""
    return os.environ.get("GENFLOW_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "genflow")


def enable_compile_cache(directory: str | None = None) -> str | None:
    """Turn on JAX's persistent compilation cache in ``directory`` (default ``cache_dir()/xla``;
    JAX_COMPILATION_CACHE_DIR, when set, wins). A program compiled once, e.g. the CIFAR-10 train
    step (47 s on a CPU), is then read from disk by the next run with the same shapes, jax
    version and devices. GENFLOW_COMPILE_CACHE=0 turns it off. Returns the directory in use."""
    if os.environ.get("GENFLOW_COMPILE_CACHE", "1").lower() in ("0", "false", "no"):
        return None
    import jax

    directory = os.environ.get("JAX_COMPILATION_CACHE_DIR") or directory or os.path.join(cache_dir(), "xla")
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError:  # a read-only home: run without the cache rather than fail
        return None
    jax.config.update("jax_compilation_cache_dir", directory)
    if "JAX_COMPILATION_CACHE_MAX_SIZE" not in os.environ:
        try:  # least-recently-used entries go past 4 GiB (jax needs filelock for that)
            import filelock  # noqa: F401

            jax.config.update("jax_compilation_cache_max_size", 4 << 30)
        except (ImportError, AttributeError, KeyError):
            pass
    return directory
