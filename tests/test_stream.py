"""mc_reduce_dataset: per-example summaries over batches, in order, independent of the batching."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxuq
from tests.helpers import mlp_predictive

N = 23


def _data():
  predict, _ = mlp_predictive(jax.random.key(0))
  x = np.linspace(-2.0, 3.0, N, dtype=np.float32)[:, None]
  return predict, x


def _run(predict, x, batch, **kwargs):
  return jaxuq.mc_reduce_dataset(
    predict,
    jax.random.key(1),
    jaxuq.batches_from_array(x, batch),
    num_samples=30,
    chunk_size=7,
    reducer=jaxuq.moments_reducer(),
    **kwargs,
  )


def test_per_example_keys_make_the_result_independent_of_the_batching():
  predict, x = _data()
  whole = _run(predict, x, N)
  assert whole["mean"].shape == (N, 1) and int(whole["count"]) == 30
  for batch in (1, 5, 7):
    got = _run(predict, x, batch)
    np.testing.assert_allclose(got["mean"], whole["mean"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["var"], whole["var"], rtol=1e-4, atol=1e-6)


def test_per_example_keys_are_the_documented_ones():
  predict, x = _data()
  got = _run(predict, x, 5)
  keys = jax.random.split(jax.random.key(1), 30)
  for g in (0, 6, 22):
    s = np.stack(
      [np.asarray(predict(jax.random.fold_in(k, g), jnp.asarray(x[g : g + 1]))[0]) for k in keys]
    ).astype(np.float64)
    np.testing.assert_allclose(got["mean"][g], s.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["var"][g], s.var(0), rtol=1e-4, atol=1e-6)


def test_batch_keys_match_mc_reduce_on_each_batch():
  predict, x = _data()
  got = _run(predict, x, 10, per_example_keys=False)
  for b, start in enumerate(range(0, N, 10)):
    rows = x[start : start + 10]
    padded = np.concatenate([rows, np.repeat(rows[-1:], 10 - len(rows), axis=0)])
    want = jaxuq.mc_reduce(
      predict,
      jax.random.fold_in(jax.random.key(1), b),
      jnp.asarray(padded),
      num_samples=30,
      chunk_size=7,
      reducer=jaxuq.moments_reducer(),
    )
    np.testing.assert_allclose(
      got["mean"][start : start + 10], want["mean"][: len(rows)], rtol=1e-6
    )


def test_sink_receives_batches_in_order_and_can_write_a_memmap(tmp_path):
  predict, x = _data()
  out = np.lib.format.open_memmap(tmp_path / "mean.npy", mode="w+", dtype=np.float32, shape=(N, 1))
  starts = []

  def sink(start, result):
    starts.append(start)
    out[start : start + len(result["mean"])] = result["mean"]

  assert _run(predict, x, 6, sink=sink) is None
  assert starts == [0, 6, 12, 18]
  out.flush()
  np.testing.assert_allclose(np.load(tmp_path / "mean.npy"), _run(predict, x, N)["mean"], rtol=1e-5)


def test_tuple_batches_pass_several_arguments():
  f = lambda k, a, b: a * b * jax.random.bernoulli(k, 0.5, a.shape)  # noqa: E731
  a = np.arange(12, dtype=np.float32).reshape(6, 2)
  got = jaxuq.mc_reduce_dataset(
    f,
    jax.random.key(0),
    [(a[:4], a[:4]), (a[4:], a[4:])],
    num_samples=200,
    reducer=jaxuq.moments_reducer(),
  )
  np.testing.assert_allclose(got["mean"], a * a / 2, rtol=0.25)


def test_bad_batches_are_refused_with_their_index():
  predict, x = _data()
  r = jaxuq.moments_reducer()

  def go(batches):
    return jaxuq.mc_reduce_dataset(predict, jax.random.key(0), batches, num_samples=4, reducer=r)

  with pytest.raises(ValueError, match="batches is empty"):
    go([])
  with pytest.raises(ValueError, match="batch 1 has trailing shapes"):
    go([x[:4], np.ones((4, 2), np.float32)])
  with pytest.raises(ValueError, match="batch 1 has trailing shapes"):
    go([x[:4], x[:6]])
  with pytest.raises(ValueError, match="batch 1 has trailing shapes"):
    go([x[:4], x[:4].astype(np.int32)])  # (float64 is float32 on the device without x64)
  # A TFDS-style dict batch raised "unhashable type: 'slice'".
  with pytest.raises(TypeError, match=r"got dict as argument 0.*b\['image'\]"):
    go([{"image": x[:4]}])
  with pytest.raises(TypeError, match="got float as argument 1"):
    go([(x[:4], 2.0)])
  with pytest.raises(ValueError, match="differ in length"):
    jaxuq.mc_reduce_dataset(
      lambda k, a, b: a + b, jax.random.key(0), [(x[:4], x[:3])], num_samples=2, reducer=r
    )
  total = jaxuq.Reducer(
    init=lambda ex: jnp.zeros(()),
    update=lambda s, c: s + c.sum(),
    merge=lambda a, b: a + b,
    finalize=lambda s: jnp.stack([s, s]),
  )
  with pytest.raises(ValueError, match="per-example results"):
    go_total = jaxuq.mc_reduce_dataset(
      predict, jax.random.key(0), [x[:4]], num_samples=2, reducer=total
    )
    del go_total


def test_scalar_outputs_with_per_example_keys_are_a_clear_error():
  # They ended in "IndexError: Too many indices: array is 0-dimensional".
  f = lambda key, x: (x * jax.random.normal(key, x.shape)).sum()  # noqa: E731
  batches = jaxuq.batches_from_array(np.ones((5, 2), np.float32), 2)
  with pytest.raises(ValueError, match="every output leaf needs that leading example axis"):
    jaxuq.mc_reduce_dataset(
      f, jax.random.key(0), batches, num_samples=4, reducer=jaxuq.moments_reducer(), progress=False
    )


def test_numpy_float64_and_jax_float32_batches_are_the_same_on_the_device():
  # A NumPy float64 first batch then jax float32 batches was refused ("trailing shapes and
  # dtypes"), though both are float32 on the device (x64 off).
  f = lambda key, x: x * jax.random.bernoulli(key, 0.5, x.shape)  # noqa: E731
  batches = [np.ones((2, 3)), jnp.ones((2, 3), jnp.float32)]
  got = jaxuq.mc_reduce_dataset(
    f, jax.random.key(0), batches, num_samples=4, reducer=jaxuq.moments_reducer(), progress=False
  )
  assert got["mean"].shape == (4, 3)


def test_a_reducer_check_still_runs_on_every_batch():
  # The check moved after the next batch is sent (it waited for the device before): logits
  # passed to classification_reducer are still refused.
  logits = lambda key, x: x + jax.random.normal(key, x.shape)  # noqa: E731
  batches = [np.zeros((2, 3), np.float32), np.full((2, 3), 5.0, np.float32)]
  with pytest.raises(ValueError, match="probabilit"):
    jaxuq.mc_reduce_dataset(
      logits, jax.random.key(0), batches, num_samples=4,
      reducer=jaxuq.classification_reducer(), progress=False,
    )  # fmt: skip
