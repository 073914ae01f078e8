"""Samplers: functions (model, x1, ts, ...) -> x0, written once against the Model interface."""
from genflow.samplers import grids
from genflow.samplers.euler import euler_maruyama, euler_ode

__all__ = ["grids", "euler_ode", "euler_maruyama"]
