"""The Flax interceptor internals jaxuq relies on: fails loudly if an upgrade changes them."""

import flax.linen as nn
import jax
import jax.numpy as jnp

import jaxuq
from jaxuq._src import interception


class Net(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = nn.Dropout(0.5, deterministic=True)(nn.Dense(3)(x))
    return jaxuq.Dropout(0.25, deterministic=True)(inputs=x)


def test_flax_interceptor_context_has_module_and_method_name():
  seen = []

  def spy(next_fun, fargs, fkwargs, context):
    seen.append((type(context.module).__name__, context.method_name))
    return next_fun(*fargs, **fkwargs)

  x = jnp.ones((2, 4))
  variables = Net().init(jax.random.key(0), x)
  with nn.intercept_methods(spy):
    Net().apply(variables, x)
  assert ("Dropout", "__call__") in seen
  assert ("Dense", "__call__") in seen
  assert ("Net", "__call__") in seen


def test_intercept_calls_sees_both_dropout_layers_and_their_inputs():
  seen = []

  def handler(module, call, args, kwargs):
    seen.append((type(module), interception.first_input(args, kwargs).shape))
    return call(*args, **kwargs)

  x = jnp.ones((2, 4))
  variables = Net().init(jax.random.key(0), x)
  with interception.intercept_calls(interception.DROPOUT_LAYERS, handler):
    y = Net().apply(variables, x)
  assert seen == [(nn.Dropout, (2, 3)), (jaxuq.Dropout, (2, 3))]
  assert y.shape == (2, 3)


def test_a_handler_replaces_the_call():
  x = jnp.ones((2, 4))
  variables = Net().init(jax.random.key(0), x)
  with interception.intercept_calls((nn.Dense,), lambda m, call, a, k: jnp.zeros((2, 3))):
    y = Net().apply(variables, x)
  assert float(jnp.abs(y).max()) == 0.0
