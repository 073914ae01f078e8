"""Frozen dataclasses registered as JAX pytrees.

Numeric fields are leaves (a new ``beta_max`` does not recompile); a field marked
``static_field()`` is hashed into the compiled program (it sets a shape or a branch).
"""
from __future__ import annotations

import dataclasses

import jax


def static_field(**kwargs):
    """A dataclass field that is part of the pytree structure, not a leaf."""
    return dataclasses.field(metadata={"static": True}, **kwargs)


def pytree_dataclass(cls):
    """Make ``cls`` a frozen dataclass and register it with ``jax.tree_util``."""
    cls = dataclasses.dataclass(frozen=True)(cls)
    fields = dataclasses.fields(cls)
    data = [f.name for f in fields if not f.metadata.get("static", False)]
    meta = [f.name for f in fields if f.metadata.get("static", False)]
    return jax.tree_util.register_dataclass(cls, data_fields=data, meta_fields=meta)
