"""Shared by the CIFAR-10 DDPM++ benchmarks: the experiment config and XLA's FLOP count."""
from __future__ import annotations

import dataclasses
import os
import runpy


def cifar_experiment(tiny: bool = False):
    """experiments/cifar10_ddpmpp.py's config; ``tiny`` shrinks the U-Net for a CPU smoke run."""
    here = os.path.dirname(os.path.abspath(__file__))
    exp = runpy.run_path(os.path.join(here, "..", "experiments", "cifar10_ddpmpp.py"))["config"]
    if tiny:
        exp = dataclasses.replace(exp, net=dataclasses.replace(exp.net, channels=16, channel_mult=(1, 2),
                                                               num_res_blocks=1))
    return exp


def compiled_flops(compiled) -> float:
    """FLOPs of one call of a compiled XLA program, from its cost analysis (nan if absent)."""
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get("flops", float("nan")))
