"""``jaxuq bench``: one vmap against sequential sampling and against the peers.

For every case (model x batch x masks) and variant the bench measures the
first call (compile + run, in a fresh process or after clearing JAX's caches)
and the warm time (median of several repeats, fewer when a run is long), and
checks that the variant returns the samples of ``sequential_sample`` to the
rounding of the matmul precision in force. Peers (PyTorch, Keras 3) run on the
device JAX runs on. It writes ``bench.json``, ``bench.md`` (markdown tables)
and a plot of speedup against T into ``--out``.

Modules: ``args`` (options and grids), ``cases`` (models and variants),
``peers`` (PyTorch and Keras), ``workers`` (processes and timing rounds),
``timing`` (matmul floors, precision, the machine), ``report`` (tables, JSON,
plot) and ``main`` (the run).
"""

from jaxuq.experiments.bench.args import HELP as HELP
from jaxuq.experiments.bench.args import add_arguments as add_arguments
from jaxuq.experiments.bench.main import run as run

# The bench decides about JAX's persistent compilation cache itself (off, so
# that first calls compile; --compilation-cache keeps it on).
COMPILE_CACHE = False
