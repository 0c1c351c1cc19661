"""Static checks shared by the samplers: the devices' processes."""

import functools
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import pytest

import jaxuq
from jaxuq._src.keys import check_process_span


def _devices(*process_indices):
  return [SimpleNamespace(process_index=i) for i in process_indices]


@pytest.mark.parametrize(
  ("held", "me", "count"),
  [((0,), 0, 1), ((0, 0), 0, 1), ((1, 1), 1, 3), ((0, 1, 2), 1, 3), ((2, 0, 1, 0), 0, 3)],
)
def test_local_devices_or_every_process_pass(held, me, count):
  check_process_span(_devices(*held), me, count)


@pytest.mark.parametrize(
  ("held", "me", "count", "found"),
  [((1,), 0, 2, r"\[1\]"), ((0, 1), 0, 3, r"\[0, 1\]"), ((1, 2), 0, 3, r"\[1, 2\]")],
)
def test_devices_of_some_processes_are_refused(held, me, count, found):
  with pytest.raises(ValueError, match=rf"this process \({me}\) only or to all {count} .*{found}"):
    check_process_span(_devices(*held), me, count)


def test_the_samplers_check_the_processes_before_tracing(monkeypatch):
  # One process here: a device list claiming another process's devices is refused
  # by mc_sample and mc_reduce before fn is traced.
  from jaxuq._src import keys

  monkeypatch.setattr(keys.jax, "process_count", lambda: 2)
  traced = []

  def fn(key, x):
    traced.append(1)
    return x

  alien = [SimpleNamespace(process_index=1, platform="cpu", id=7)]
  calls = (jaxuq.mc_sample, functools.partial(jaxuq.mc_reduce, reducer=jaxuq.moments_reducer()))
  for call in calls:
    with pytest.raises(ValueError, match="devices must belong to this process"):
      call(fn, jax.random.key(0), jnp.ones(2), num_samples=4, devices=alien)
  assert not traced
