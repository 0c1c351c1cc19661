"""How an epoch of the active-learning loop cuts its labelled rows into batches."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxuq._src.active.fit_labelled import batch_bounds, fit_labelled, shuffle, weighted_objective
from jaxuq._src.active.labelled import labelled_set
from jaxuq._src.active.setup import fingerprint
from jaxuq._src.losses import resolve_loss
from jaxuq._src.training import apply_step
from jaxuq.models import MLP
from jaxuq.train import init_state


def test_keras_batches_end_with_a_partial_one_and_even_batches_split_the_rows():
  assert batch_bounds(130, 128) == [(0, 128), (128, 130)]
  assert batch_bounds(130, 128, even=True) == [(0, 65), (65, 130)]
  assert batch_bounds(20, 128, even=True) == batch_bounds(20, 128) == [(0, 20)]
  assert batch_bounds(256, 128, even=True) == batch_bounds(256, 128)


@settings(max_examples=200, deadline=None)
@given(count=st.integers(1, 5000), batch_size=st.integers(1, 300), even=st.booleans())
def test_batches_cover_the_epoch_once_in_the_fewest_steps(count, batch_size, even):
  bounds = batch_bounds(count, batch_size, even)
  assert len(bounds) == -(-count // batch_size)
  assert bounds[0][0] == 0 and bounds[-1][1] == count
  assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
  sizes = [stop - start for start, stop in bounds]
  assert all(1 <= s <= batch_size for s in sizes)
  if even:
    assert max(sizes) - min(sizes) <= 1


def test_even_batches_are_the_engine_step_on_each_slice_of_the_shuffle():
  # 20 labelled rows at batch 16: two batches of 10 (each padded to 16 rows, 6 of weight 0).
  # Without dropout, each step equals the engine's step on exactly those 10 rows.
  net = MLP(out_features=3, depth=1, width=16, rate=0.0)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(90, 2)), jnp.float32)
  y = jnp.asarray(rng.integers(0, 3, 90), jnp.int32)
  objective = resolve_loss("cross_entropy")
  state = init_state(jax.random.key(3), net, optax.adam(1e-2), x[:1])
  stacked = jax.tree.map(lambda a: a[None], (state, labelled_set(jnp.arange(20), 90, 40)))
  ours, _ = fit_labelled(
    stacked[0], x, y, stacked[1], objective=objective, epochs=2, batch_size=16, even_batches=True
  )
  ref = stacked[0]
  for _ in range(2):
    ref, batches = shuffle(ref, stacked[1], batch_size=16)
    order = np.asarray(batches[0]).reshape(-1)
    one = jax.tree.map(lambda a: a[0], ref)
    for start, stop in [(0, 10), (10, 20)]:
      rows = order[start:stop]
      target = (y[rows], jnp.ones(stop - start, jnp.float32))
      one, _ = apply_step(one, x[rows], target, weighted_objective(objective))
    ref = jax.tree.map(lambda a: a[None], one)
  for a, b in zip(jax.tree.leaves(ours.params), jax.tree.leaves(ref.params), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  assert not np.allclose(ours.params["Dense_0"]["kernel"], stacked[0].params["Dense_0"]["kernel"])


@pytest.mark.parametrize("even", [False, True])
def test_only_even_batches_enter_the_checkpoint_fingerprint(even):
  # Runs checkpointed before the option existed must resume: without it the
  # fingerprint has no such entry.
  options = {
    "loss": "cross_entropy", "hyperparams": None, "members": None, "even_batches": even,
    "checkpoint": None, "stop_after": None, "progress": None, "callback": None, "epochs": 2,
  }  # fmt: skip
  x = np.zeros((4, 2), np.float32)
  y = np.zeros(4, np.int32)
  got = fingerprint(jax.random.key(0), MLP(3), optax.adam(1e-3), (x, y, x, y),
                    np.arange(2)[None], ["bald"], options, jax.random.split(jax.random.key(0), 1))  # fmt: skip
  assert ("even_batches" in got["options"]) == even
