"""The training stack (one step builder and its pieces, generic over the state), the diffusion train
step, TrainState, optimizers, checkpoints, the loop, post-hoc EMA."""
from genflow.training import ema_snapshots, posthoc_ema
from genflow.training.checkpoint import Checkpointer
from genflow.training.loop import train_loop
from genflow.training.optim import make_optimizer, scale_by_tiger, tiger, tiger_rms
from genflow.training.stack import Step, Update, accumulate, advance, apply_gradients, ema_update, guard, make_step
from genflow.training.state import TrainState, init_state, split_net
from genflow.training.step import make_mesh, make_train_step

__all__ = ["ema_snapshots", "posthoc_ema", "Checkpointer", "train_loop", "make_optimizer", "scale_by_tiger", "tiger", "tiger_rms", "TrainState",
           "init_state", "split_net", "make_mesh", "make_train_step", "Step", "Update", "accumulate", "advance",
           "apply_gradients", "ema_update", "guard", "make_step"]
