"""ReFlow: couplings of a trained flow, k-rectified flow, straightness, and distillation.

Data flows one way: this package uses samplers, objectives, training and data; nothing below
it imports it, and it never imports ``genflow.cli`` (the commands that read runs, ``genflow reflow``
and ``genflow distill``, are ``genflow.cli.reflow``).
Time is genflow's (t = 0 data, t = 1 noise); rectified-flow papers' time is 1 - t.
"""
from genflow.reflow.couplings import (Couplings, chunk_key, chunk_noise, chunk_path, existing_chunks, generate_couplings,
                                      load_couplings, make_coupler, pf_ode_sampler)
from genflow.reflow.report import Stopwatch, at_sample_size, default_distance, flow_report, format_table
from genflow.reflow.straightness import coupling_cost, straightness
from genflow.reflow.train import coupled, distillation, grid_time, one_step_sample, train_on_couples

__all__ = ["chunk_key", "chunk_noise",
           "Couplings", "chunk_path", "existing_chunks", "generate_couplings", "load_couplings", "make_coupler",
           "pf_ode_sampler", "Stopwatch", "at_sample_size", "default_distance", "flow_report", "format_table", "coupling_cost",
           "straightness", "coupled", "distillation", "grid_time", "one_step_sample", "train_on_couples"]
