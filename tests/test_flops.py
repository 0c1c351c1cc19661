"""Matmul and convolution FLOPs from a jaxpr, against counts by hand."""

import jax
import jax.numpy as jnp
import pytest

from jaxuq._src.flops import matmul_flops
from jaxuq.experiments.bench import cases


def test_products_count_two_m_n_k_and_batch_dims():
  a, b = jnp.ones((5, 7)), jnp.ones((7, 3))
  assert matmul_flops(jnp.matmul, a, b) == 2 * 5 * 7 * 3
  batched = jnp.ones((4, 5, 7)), jnp.ones((4, 7, 3))
  assert matmul_flops(jnp.matmul, *batched) == 4 * 2 * 5 * 7 * 3
  # elementwise work is not counted; vmap and jit bodies are
  assert matmul_flops(lambda x: jnp.tanh(x) + 1, a) == 0
  assert matmul_flops(jax.vmap(jax.jit(jnp.matmul), (0, None)), batched[0], b) == 4 * 2 * 5 * 7 * 3


def test_convolutions_count_outputs_times_kernel_per_output_feature():
  x, k = jnp.ones((1, 8, 8, 4)), jnp.ones((3, 3, 4, 6))
  conv = lambda x, k: jax.lax.conv_general_dilated(
    x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
  )  # noqa: E731
  assert matmul_flops(conv, x, k) == 2 * (8 * 8 * 6) * (3 * 3 * 4)
  grouped = lambda x, k: jax.lax.conv_general_dilated(  # noqa: E731
    x, k, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=2
  )
  assert matmul_flops(grouped, x, jnp.ones((3, 3, 2, 6))) == 2 * (6 * 6 * 6) * (3 * 3 * 2)


def test_scans_multiply_and_value_dependent_counts_are_refused():
  w = jnp.ones((4, 4))
  scanned = lambda x: jax.lax.scan(lambda c, _: (c @ w, None), x, length=5)[0]  # noqa: E731
  assert matmul_flops(scanned, jnp.ones((2, 4))) == 5 * 2 * 2 * 4 * 4
  branchy = lambda p, x: jax.lax.cond(p, lambda x: x @ w, lambda x: x, x)  # noqa: E731
  with pytest.raises(ValueError, match="depends on values"):
    matmul_flops(branchy, True, jnp.ones((2, 4)))


def test_the_bench_counts_its_models_by_hand_and_without_cost_analysis(monkeypatch):
  # On a GPU (a PJRT C API backend) XLA's cost analysis is None: every FLOP count and floor
  # fraction of the bench was 0 there. The count no longer asks XLA.
  monkeypatch.setattr(jax.stages.Lowered, "cost_analysis", lambda self: None)
  b, w = 64, 128
  assert cases.forward_flops(cases.Case("mlp", b, 10, width=w)) == 2 * b * (w + 3 * w * w + w)
  flops = cases.case_flops(cases.Case("mlp-last", b, 10, width=w))
  assert flops.per_mask == 2 * b * w  # the last dense layer, after the dropout


def test_shard_map_bodies_are_refused():
  # they run per shard: counted once at per-shard shapes, they were a fraction of the total
  from jax.sharding import PartitionSpec as P

  mesh = jax.make_mesh((1,), ("x",))
  f = jax.shard_map(lambda a, b: a @ b, mesh=mesh, in_specs=(P("x"), P()), out_specs=P("x"))
  with pytest.raises(ValueError, match="shard_map"):
    matmul_flops(f, jnp.ones((4, 3)), jnp.ones((3, 2)))
