"""jaxuq: Monte Carlo dropout uncertainty for JAX, exact where it can be.

The public API. Implementation lives in ``jaxuq._src``; import from here.
"""

# Public submodules: jaxuq.active, jaxuq.calibrate, jaxuq.conformal, jaxuq.exact,
# jaxuq.metrics, jaxuq.models, jaxuq.reject, jaxuq.train (jaxuq.data is imported
# on demand: it is only for experiments; jaxuq.plot needs matplotlib).
from jaxuq import active as active
from jaxuq import calibrate as calibrate
from jaxuq import conformal as conformal
from jaxuq import exact as exact
from jaxuq import metrics as metrics
from jaxuq import models as models
from jaxuq import reject as reject
from jaxuq import train as train
from jaxuq._src.adapters import LinenPredictive as LinenPredictive
from jaxuq._src.adapters import NnxPredictive as NnxPredictive
from jaxuq._src.adapters import from_linen as from_linen
from jaxuq._src.adapters import from_nnx as from_nnx
from jaxuq._src.cast import CastPredictive as CastPredictive
from jaxuq._src.cast import with_dtype as with_dtype
from jaxuq._src.compile_cache import enable_compilation_cache as enable_compilation_cache
from jaxuq._src.dropout import MASK_COLLECTION as MASK_COLLECTION
from jaxuq._src.dropout import Dropout as Dropout
from jaxuq._src.dropout import keep_mask as keep_mask
from jaxuq._src.extras import MissingDependencyError as MissingDependencyError
from jaxuq._src.reduce import Reducer as Reducer
from jaxuq._src.reduce import mc_reduce as mc_reduce
from jaxuq._src.reducers import classification_reducer as classification_reducer
from jaxuq._src.reducers import moments_reducer as moments_reducer
from jaxuq._src.sampling import auto_chunk_size as auto_chunk_size
from jaxuq._src.sampling import mc_sample as mc_sample
from jaxuq._src.sampling import sequential_sample as sequential_sample
from jaxuq._src.stream import batches_from_array as batches_from_array
from jaxuq._src.stream import mc_reduce_dataset as mc_reduce_dataset
from jaxuq._src.summaries import Summary as Summary
from jaxuq._src.summaries import predictive_mean as predictive_mean
from jaxuq._src.summaries import predictive_std as predictive_std
from jaxuq._src.summaries import summarize as summarize

__version__ = "0.1.0"

__all__ = [
  "MASK_COLLECTION",
  "CastPredictive",
  "Dropout",
  "LinenPredictive",
  "MissingDependencyError",
  "NnxPredictive",
  "Reducer",
  "Summary",
  "active",
  "auto_chunk_size",
  "batches_from_array",
  "calibrate",
  "classification_reducer",
  "conformal",
  "enable_compilation_cache",
  "exact",
  "from_linen",
  "from_nnx",
  "keep_mask",
  "mc_reduce",
  "mc_reduce_dataset",
  "mc_sample",
  "metrics",
  "models",
  "moments_reducer",
  "predictive_mean",
  "predictive_std",
  "reject",
  "sequential_sample",
  "summarize",
  "train",
  "with_dtype",
]
