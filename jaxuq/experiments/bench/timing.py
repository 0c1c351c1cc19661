"""What the bench measures besides the variants: matmul floors, precision, the machine.

The floor of a case is its FLOPs (``cases.case_flops``: the key-independent
layers once, the rest once per mask) at the device's best matmul rate, so no
sampler of T masks can beat it. The rate is measured on the device JAX runs
on, at JAX's default precision (what the variants run at), at ``highest`` and
in bfloat16.
"""

from __future__ import annotations

import importlib.metadata
import math
import os
import platform
import sys
import time
from typing import Any

# Rows M of the (M x w) @ (w x w) products whose best rate is the floor; an
# accelerator needs taller products to reach its rate.
CPU_ROWS = (256, 1024, 4096)
ACCELERATOR_ROWS = (256, 1024, 4096, 16384, 65536)
FLOOR_PRECISIONS = ("default", "highest", "bfloat16")

# Relative rounding of one float32 matmul at each precision (unit roundoff of
# the operands' mantissa): float32 23 bits, TF32 10, bfloat16 7.
_ROUNDOFF = {"float32": 2.0**-24, "tf32": 2.0**-11, "bfloat16": 2.0**-8}
FLOAT32_TOLERANCE = 1e-4  # relative to the samples' scale: float32 rounding, not another mask


def set_compilation_cache(enabled: bool) -> dict[str, Any]:
  """Turns JAX's persistent compilation cache on or off in this process; returns the old settings.

  Off (the bench's default), every first call compiles, as a new user's does,
  even with ``$JAX_COMPILATION_CACHE_DIR`` set and after earlier compilations
  (JAX is made to decide again). Give the returned settings to
  :func:`restore_compilation_cache` to put everything back as it was.
  """
  from jaxuq._src import compile_cache  # noqa: PLC0415

  old = compile_cache.cache_settings()
  if not enabled:
    compile_cache.disable_compilation_cache()
    return old
  if not old["jax_compilation_cache_dir"]:
    compile_cache.enable_compilation_cache()  # the jaxuq command's folder
  compile_cache.apply_cache_settings(
    compile_cache.cache_settings() | {"jax_enable_compilation_cache": True}
  )
  return old


def restore_compilation_cache(settings: dict[str, Any]) -> None:
  """Puts back the settings :func:`set_compilation_cache` returned."""
  from jaxuq._src import compile_cache  # noqa: PLC0415

  compile_cache.apply_cache_settings(settings)


def _precision_setting() -> str:
  import jax  # noqa: PLC0415

  return str(getattr(jax.config, "jax_default_matmul_precision", None) or "default")


def matmul_precision() -> str:
  """The float32 matmul precision in force on JAX's default device.

  ``'float32'`` on CPUs and wherever ``highest`` is set; ``'tf32'`` at the
  default precision on GPUs (NVIDIA's tensor cores); ``'bfloat16'`` at the
  default precision on TPUs.
  """
  import jax  # noqa: PLC0415

  setting = _precision_setting().lower()
  device = jax.devices()[0].platform
  if device == "cpu" or setting in ("highest", "float32"):
    return "float32"
  if setting in ("bfloat16", "fastest"):
    return "bfloat16"
  if device == "gpu" or setting in ("tensorfloat32", "high"):
    return "tf32"
  return "bfloat16"  # TPU default: one bfloat16 pass


def check_tolerance(precision: str) -> float:
  """Relative tolerance (to the samples' scale) of the check against the loop.

  A batched and a single matmul may round differently: float32 keeps the
  historical 1e-4; TF32 and bfloat16 allow 4 units of their roundoff (TF32:
  about 2e-3, bfloat16 1.6e-2).
  """
  return max(FLOAT32_TOLERANCE, 4 * _ROUNDOFF[precision])


def matmul_rate(width: int = 1024, precision: str = "default", rows: tuple | None = None) -> float:
  """The device's matmul rate in FLOP/s: the best of (M x w) @ (w x w) over M in ``rows``.

  ``precision`` is ``'default'`` (JAX's default, what the samplers run at),
  ``'highest'`` (float32 on every device) or ``'bfloat16'`` (bfloat16
  operands). Each shape gets 5 rounds of 10 products and keeps its fastest
  round; the best over the shapes is the floor a forward pass can hope for.
  """
  import jax  # noqa: PLC0415
  import jax.numpy as jnp  # noqa: PLC0415

  if rows is None:
    rows = CPU_ROWS if jax.devices()[0].platform == "cpu" else ACCELERATOR_ROWS
  dtype = jnp.bfloat16 if precision == "bfloat16" else jnp.float32
  prec = jax.lax.Precision.HIGHEST if precision == "highest" else None
  f = jax.jit(lambda a, b: jnp.matmul(a, b, precision=prec))
  best_rate = 0.0
  for m in rows:
    a = jnp.ones((m, width), dtype)
    b = jnp.ones((width, width), dtype)
    jax.block_until_ready(f(a, b))
    best = math.inf
    for _ in range(5):
      t0 = time.perf_counter()
      for _ in range(10):
        out = f(a, b)
      jax.block_until_ready(out)
      best = min(best, (time.perf_counter() - t0) / 10)
    best_rate = max(best_rate, 2 * m * width * width / best)
  return best_rate


def matmul_floors(width: int) -> dict[str, float]:
  """The matmul rate (FLOP/s) at each of ``FLOOR_PRECISIONS``."""
  return {p: matmul_rate(width, p) for p in FLOOR_PRECISIONS}


def _version(name: str) -> str | None:
  try:
    return importlib.metadata.version(name)
  except importlib.metadata.PackageNotFoundError:
    return None


def environment() -> dict[str, Any]:
  """The device, the precision in force and the library versions of this run."""
  import jax  # noqa: PLC0415

  device = jax.devices()[0]
  libs = ("jax", "jaxlib", "flax", "optax", "numpy", "torch", "keras")
  versions: dict[str, str | None] = {name: _version(name) for name in libs}
  versions["jax"] = jax.__version__  # from source or installed, what runs
  versions["python"] = platform.python_version()
  return {
    "platform": device.platform,
    "device_kind": device.device_kind,
    "devices": [str(d) for d in jax.devices()],
    "host": platform.platform(),
    "processor": platform.processor(),
    "cpu_count": os.cpu_count(),
    "matmul_precision_setting": _precision_setting(),
    "matmul_precision": matmul_precision(),
    "python_executable": sys.executable,
    "versions": versions,
    "glibc_tunables": os.environ.get("GLIBC_TUNABLES"),
  }
