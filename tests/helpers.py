"""Shared test fixtures: every process, listed once."""
from genflow.processes import DDPM, EDM, VE, VP, RectifiedFlow, SubVP

ALL_PROCESSES = [VP(), SubVP(), VE(), EDM(), RectifiedFlow(), DDPM(), DDPM(schedule="cosine")]
IDS = ["vp", "subvp", "ve", "edm", "rectified_flow", "ddpm_linear", "ddpm_cosine"]
