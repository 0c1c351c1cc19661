"""Training with optax: one model, deep ensembles in parallel, atomic checkpoints, losses.

``train`` fits one linen model; ``train_ensemble`` fits N members with the same
engine and one jitted epoch for all; states are immutable ``TrainState``
pytrees carrying their model and optimizer as static fields (one jitted step
serves them all), which ``save_checkpoint`` / ``restore_checkpoint`` write
atomically with an integrity hash and read back.
"""

from jaxuq._src.checkpoint import CheckpointError as CheckpointError
from jaxuq._src.checkpoint import restore_checkpoint as restore_checkpoint
from jaxuq._src.checkpoint import save_checkpoint as save_checkpoint
from jaxuq._src.ensemble_predict import ensemble_mc_sample as ensemble_mc_sample
from jaxuq._src.ensemble_predict import ensemble_predict as ensemble_predict
from jaxuq._src.ensemble_predict import member as member
from jaxuq._src.ensembles import train_ensemble as train_ensemble
from jaxuq._src.fit import train as train
from jaxuq._src.losses import accuracy as accuracy
from jaxuq._src.losses import cross_entropy as cross_entropy
from jaxuq._src.losses import gaussian_mean_variance as gaussian_mean_variance
from jaxuq._src.losses import gaussian_nll as gaussian_nll
from jaxuq._src.losses import mse as mse
from jaxuq._src.subsets import Subsets as Subsets
from jaxuq._src.subsets import member_subsets as member_subsets
from jaxuq._src.training import TrainState as TrainState
from jaxuq._src.training import init_state as init_state
from jaxuq._src.training import predict as predict
from jaxuq._src.training import train_step as train_step

__all__ = [
  "CheckpointError",
  "Subsets",
  "TrainState",
  "accuracy",
  "cross_entropy",
  "ensemble_mc_sample",
  "ensemble_predict",
  "gaussian_mean_variance",
  "gaussian_nll",
  "init_state",
  "member",
  "member_subsets",
  "mse",
  "predict",
  "restore_checkpoint",
  "save_checkpoint",
  "train",
  "train_ensemble",
  "train_step",
]
