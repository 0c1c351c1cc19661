"""The reference models of the seed experiments (linen modules).

All take ``train`` at call time (``True``: dropout on, BatchNorm on batch
statistics; ``False``: dropout off, BatchNorm on running averages) and return
raw outputs (logits for the classifiers). MC dropout:
``jaxuq.from_linen(model, variables, train=False)``. :class:`Conv` is the
convolution layer of the CNNs: ``flax.linen.Conv``'s parameters, with a kernel
gradient that XLA runs faster on the CPU.
"""

from jaxuq._src.conv import Conv as Conv
from jaxuq._src.models import MLP as MLP
from jaxuq._src.models import BasicCNN as BasicCNN
from jaxuq._src.models import DeepCNN as DeepCNN
from jaxuq._src.tiny import TinyNet as TinyNet
from jaxuq._src.tiny import tiny_variables as tiny_variables

__all__ = ["MLP", "BasicCNN", "Conv", "DeepCNN", "TinyNet", "tiny_variables"]
