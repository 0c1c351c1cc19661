"""Small models and functions shared by the tests."""

import flax.linen as nn
import jax.numpy as jnp

import jaxuq


def mask_fn(key, x):
  """A predictive function whose output is its own dropout mask (and x)."""
  return {"mask": jaxuq.keep_mask(key, (x.shape[0], 7), 0.3), "x": x * 2}


class MLP(nn.Module):
  """A small ReLU MLP with jaxuq dropout after each hidden layer."""

  width: int = 32
  depth: int = 2
  rate: float = 0.5
  flax_dropout: bool = False

  @nn.compact
  def __call__(self, x, train: bool = False):
    for _ in range(self.depth):
      x = nn.relu(nn.Dense(self.width)(x))
      layer = nn.Dropout if self.flax_dropout else jaxuq.Dropout
      x = layer(self.rate, deterministic=not train)(x)
    return nn.Dense(1)(x)


def mlp_predictive(key, batch=16, **kwargs):
  model = MLP(**kwargs)
  x = jnp.linspace(-2.0, 3.0, batch)[:, None]
  return jaxuq.from_linen(model, model.init(key, x)), x


def run_on_cpu_devices(script: str, count: int = 8) -> None:
  """Runs ``script`` in a fresh Python on ``count`` simulated CPU devices; it must print OK last."""
  import os
  import subprocess
  import sys

  env = dict(
    os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={count}", JAX_PLATFORMS="cpu"
  )
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
  proc = subprocess.run(
    [sys.executable, "-c", script], env=env, cwd=root, capture_output=True, text=True, timeout=600
  )
  assert proc.returncode == 0, proc.stderr[-4000:]
  assert proc.stdout.strip().endswith("OK")


def imported_modules(path) -> list[str]:
  """The names of the modules a Python file imports (``import a.b``, ``from a.b import c``)."""
  import ast
  import pathlib

  names = []
  for node in ast.walk(ast.parse(pathlib.Path(path).read_text())):
    if isinstance(node, ast.Import):
      names += [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      names.append(node.module or "")
  return names
