"""Active learning with MC dropout: acquisition functions over an unlabelled pool.

Scores take MC softmax samples ``probs`` of shape ``(samples, n, classes)``
and return ``(n,)``, higher = acquire first. :func:`acquisition` builds an
:class:`Acquisition` whose ``select(key, probs, k)`` returns the ``k`` indices
to label; :func:`score_pool`, :func:`sample_pool` and :func:`acquire` run MC
dropout over a pool chunk by chunk. :func:`active_learning` runs the loop
(train, test, score a pool subset, acquire, label) with a checkpoint every
round; :func:`active_learning_runs` runs several functions and repeats side by
side; :func:`checkpoint_history` reads a run's history from its checkpoint;
:func:`balanced_seed` draws a class-balanced seed set.
"""

from jaxuq._src.active.batchbald import joint_entropy as joint_entropy
from jaxuq._src.active.labelled import balanced_seed as balanced_seed
from jaxuq._src.active.loop import active_learning as active_learning
from jaxuq._src.active.loop import active_learning_runs as active_learning_runs
from jaxuq._src.active.pool import acquire as acquire
from jaxuq._src.active.pool import sample_pool as sample_pool
from jaxuq._src.active.pool import score_pool as score_pool
from jaxuq._src.active.runs import checkpoint_history as checkpoint_history
from jaxuq._src.active.scores import bald as bald
from jaxuq._src.active.scores import max_entropy as max_entropy
from jaxuq._src.active.scores import mean_std as mean_std
from jaxuq._src.active.scores import variation_ratios as variation_ratios
from jaxuq._src.active.select import Acquisition as Acquisition
from jaxuq._src.active.select import acquisition as acquisition

__all__ = [
  "Acquisition",
  "acquire",
  "acquisition",
  "active_learning",
  "active_learning_runs",
  "bald",
  "balanced_seed",
  "checkpoint_history",
  "joint_entropy",
  "max_entropy",
  "mean_std",
  "sample_pool",
  "score_pool",
  "variation_ratios",
]
