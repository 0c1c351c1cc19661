"""One of two processes of tests/test_multiprocess.py (not a test module itself).

Usage: python -m tests.multiprocess_worker PROCESS_ID PORT. Two simulated CPU
devices per process, JAX's own distributed runtime (coordinator on
127.0.0.1), gloo collectives across the processes.
"""

import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402

jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.distributed.initialize(
  coordinator_address=f"127.0.0.1:{sys.argv[2]}",
  num_processes=2,
  process_id=int(sys.argv[1]),
  initialization_timeout=60,
)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.experimental import multihost_utils  # noqa: E402

import jaxuq  # noqa: E402
from tests.helpers import mask_fn, mlp_predictive  # noqa: E402

assert len(jax.devices()) == 4 and len(jax.local_devices()) == 2, jax.devices()
one = jax.local_devices()[:1]
key = jax.random.key(11)
x = jnp.arange(3.0)
for n in (16, 13):
  got = multihost_utils.process_allgather(
    jaxuq.mc_sample(mask_fn, key, x, num_samples=n), tiled=True
  )
  alone = jaxuq.mc_sample(mask_fn, key, x, num_samples=n, devices=one)
  np.testing.assert_array_equal(got["mask"], alone["mask"])  # masks bit for bit
predict, xs = mlp_predictive(key)
got = multihost_utils.process_allgather(
  jaxuq.mc_sample(predict, key, xs, num_samples=12), tiled=True
)
np.testing.assert_allclose(
  got, jaxuq.mc_sample(predict, key, xs, num_samples=12, devices=one), rtol=2e-6, atol=1e-6
)
reducer = jaxuq.moments_reducer()
for n in (16, 15):
  got = jaxuq.mc_reduce(predict, key, xs, num_samples=n, chunk_size=3, reducer=reducer)
  alone = jaxuq.mc_reduce(
    predict, key, xs, num_samples=n, chunk_size=3, reducer=reducer, devices=one
  )
  assert int(got["count"]) == n
  np.testing.assert_allclose(got["mean"], alone["mean"], rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(got["var"], alone["var"], rtol=1e-5, atol=1e-7)
# Devices of the other process only: refused before any work (it would hang).
other = [d for d in jax.devices() if d.process_index != jax.process_index()]
try:
  jaxuq.mc_sample(predict, key, xs, num_samples=4, devices=other)
except ValueError as e:
  assert "devices must belong to this process" in str(e), e
else:
  raise AssertionError("devices of another process were accepted")
print("OK", jax.process_index(), flush=True)
