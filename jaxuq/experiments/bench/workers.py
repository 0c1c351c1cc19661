"""Running the variants: each in a process of its own, or all in this one.

A variant is built, then called once: its first call (compile + run). In a
worker process of its own that call is the variant's first in a fresh process;
in this process (``--in-process``, the quick and GPU grids) JAX's in-memory
caches are cleared just before it (``jax.clear_caches()``), so it compiles
anew. JAX's persistent compilation cache is off in both unless asked for.
Workers are then timed in alternating rounds; in this process each variant
runs to the end before the next is built.
"""

from __future__ import annotations

import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from jaxuq.experiments.bench import timing

CHECK_MASKS = 20  # samples compared with the loop (a prefix keeps big cases cheap)
MOMENT_CHECK_MASKS = 200  # loop samples the closed form's mean is tested against
FRESH_PROCESS = "fresh process"
CACHES_CLEARED = "caches cleared"


def _peak_rss_mib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class _Timed:
  """One variant on one case, built and called once: ``time_once`` and ``finish``.

  It is what a worker process holds between the parent's requests (or, in
  process, what the parent holds itself).
  """

  def __init__(self, spec: dict) -> None:
    import jax  # noqa: PLC0415

    from jaxuq.experiments.bench import cases, peers  # noqa: PLC0415

    self.spec = spec
    self.case = case = cases.Case(**spec["case"])
    name = spec["variant"]
    self.rss_before = _peak_rss_mib()
    self.skipped: str | None = None
    self.compare = ""
    self.single = False
    self.describe: dict = {}
    if name in peers.PEERS:
      self.skipped = peers.available(name, case)
      if self.skipped:
        return
      self.run, self.calls = peers.build(
        name, case, threads=os.cpu_count() or 1, loop_cap=spec.get("loop_cap")
      )
      self.describe = peers.describe(name)
    else:
      variant = cases.build_variant(name, case, loop_cap=spec.get("loop_cap"))
      self.run, self.compare, self.single = variant.run, variant.compare, variant.single
      self.calls = case.masks if variant.calls is None else variant.calls
    if not spec.get("fresh_process", False):
      jax.clear_caches()  # the first call compiles, as in a fresh process
    t0 = time.perf_counter()
    self.out = jax.block_until_ready(self.run())
    self.first = time.perf_counter() - t0
    self.times: list[float] = []

  def time_once(self) -> float:
    import jax  # noqa: PLC0415

    t0 = time.perf_counter()
    jax.block_until_ready(self.run())
    self.times.append(time.perf_counter() - t0)
    return self.times[-1]

  def finish(self) -> dict:
    """The result row's measurements: median time scaled to the case's masks, memory, check."""
    import numpy as np  # noqa: PLC0415

    from jaxuq.experiments.bench import cases  # noqa: PLC0415

    case = self.case
    scale_to = 1 if self.single else case.masks
    result = {
      "time_s": statistics.median(self.times) * scale_to / self.calls,
      "times_s": self.times,
      "first_call_s": self.first,
      "first_call": FRESH_PROCESS if self.spec.get("fresh_process") else CACHES_CLEARED,
      "repeats": len(self.times),
      "masks_timed": 1 if self.single else case.masks,
      "first_call_masks": 1 if self.single else self.calls,  # a capped loop's first call: cap
      "extrapolated_from": self.calls if self.calls != scale_to else None,
      # a variant's own peak only in a process of its own; in this one, the process's so far
      "peak_rss_mib": _peak_rss_mib() if self.spec.get("fresh_process") else None,
      "process_peak_rss_mib": _peak_rss_mib(),
      "rss_before_mib": self.rss_before,
      **self.describe,
    }
    out = self.out
    if self.compare and self.spec.get("check", True):
      if self.compare == "moments":
        ref = cases.reference("sequential", case, limit=MOMENT_CHECK_MASKS)
        result["check"] = _check_moments(out, np.asarray(ref))
      else:
        kind = "sequential_shared" if self.compare == "sequential_shared" else "sequential"
        limit = min(np.asarray(out).shape[0], CHECK_MASKS)
        ref = cases.reference(kind, case, limit=limit)
        scale = max(1.0, float(np.max(np.abs(ref))))
        diff = cases.max_abs_diff(np.asarray(out)[:limit], ref)
        precision = timing.matmul_precision()
        tol = timing.check_tolerance(precision)
        result["check"] = {
          "max_abs_diff": diff,
          "relative": diff / scale,
          "tolerance": tol,
          "precision": precision,
          "ok": diff <= tol * scale,
        }
    return result


def _check_moments(moments, samples) -> dict:
  """Closed-form mean vs the MC mean of the same model: within 5 standard errors."""
  import numpy as np  # noqa: PLC0415

  mean = np.asarray(moments).reshape(samples.shape[1:])
  mc_mean = samples.mean(0)
  se = samples.std(0) / math.sqrt(samples.shape[0]) + 1e-6
  z = float(np.max(np.abs(mean - mc_mean) / se))
  return {"max_z": z, "ok": z < 5.0 + 2.0 * math.log10(mean.size + 1)}


def _repeats(spec: dict, warm: float) -> int:
  """Warm runs in all for a variant whose first warm run took ``warm`` seconds.

  As many as fit in the budget (at most ``repeats``), and at least 3 (or
  ``repeats``) while 3 fit in twice the budget: a median of one run is the
  first warm run's, the slowest. From a warm run, not the first call: a first
  call of seconds of compilation left quick variants a single run.
  """
  fit = int(spec["budget"] // max(warm, 1e-9))
  at_least = min(3, spec["repeats"]) if 3 * warm <= 2 * spec["budget"] else 1
  return max(1, at_least, min(spec["repeats"], fit))


def _start(spec: dict) -> tuple[_Timed | None, dict]:
  """Builds a variant and calls it once: the runner and its first report.

  The report is ``{'first_call_s': ...}`` when ready, else ``{'skipped': why}``
  or ``{'error': what}`` (and no runner to time).
  """
  try:
    timed = _Timed(spec)
  except Exception as e:  # noqa: BLE001 - reported as the variant's result
    return None, {"error": f"{type(e).__name__}: {e}"}
  if timed.skipped:
    return None, {"skipped": timed.skipped}
  return timed, {"first_call_s": timed.first}


def serve(spec: dict) -> int:
  """The worker's side of the protocol: one JSON line per request on stdin.

  The first line is ``_start``'s report; then ``time`` runs the variant once
  and answers its seconds, ``finish`` answers the result row (memory, check)
  and ends the worker.
  """
  timed, info = _start(spec)
  print(json.dumps(info), flush=True)
  if timed is None:
    return 0 if "skipped" in info else 1
  for line in sys.stdin:
    if line.strip() == "time":
      print(json.dumps({"t": timed.time_once()}), flush=True)
    elif line.strip() == "finish":
      print(json.dumps(timed.finish()), flush=True)
      return 0
  return 1


class _Worker:
  """A variant in a process of its own, timed on request (see ``serve``)."""

  def __init__(self, spec: dict) -> None:
    self.log = tempfile.TemporaryFile(mode="w+")
    self.proc = subprocess.Popen(
      [sys.executable, "-m", "jaxuq", "bench", "--worker", json.dumps(spec)],
      stdin=subprocess.PIPE,
      stdout=subprocess.PIPE,
      stderr=self.log,
      text=True,
    )
    self.info = self._read()

  def _read(self) -> dict:
    assert self.proc.stdout is not None
    for line in self.proc.stdout:
      if line.startswith("{"):
        return json.loads(line)
    self.proc.wait()
    self.log.seek(0)
    tail = self.log.read().strip().splitlines()[-1:] or [f"exit code {self.proc.returncode}"]
    return {"error": tail[0]}

  def _ask(self, request: str) -> dict:
    assert self.proc.stdin is not None
    try:
      self.proc.stdin.write(request + "\n")
      self.proc.stdin.flush()
    except BrokenPipeError:
      pass
    return self._read()

  def time_once(self) -> float | None:
    reply = self._ask("time")
    if "t" not in reply:  # the worker failed: its error is the result
      self.info = reply
    return reply.get("t")

  def finish(self) -> dict:
    result = self.info if _failed(self.info) else self._ask("finish")
    self.proc.communicate()  # waits, and closes the pipes
    self.log.close()
    return result


class _Local:
  """A variant in this process: no peak memory of its own, caches cleared for its first call."""

  def __init__(self, spec: dict) -> None:
    self.timed, self.info = _start(spec)

  def time_once(self) -> float | None:
    if self.timed is None:
      return None
    try:
      return self.timed.time_once()
    except Exception as e:  # noqa: BLE001 - out of memory, say: the variant's result
      self.info, self.timed = {"error": f"{type(e).__name__}: {e}"}, None
      return None

  def finish(self) -> dict:
    return self.info if self.timed is None else self.timed.finish()


def _failed(info: dict) -> bool:
  """Whether a runner reported an error or a skip instead of being ready."""
  return "error" in info or bool(info.get("skipped"))


def run_case(specs: list[dict], isolate: bool) -> list[dict]:
  """Times the variants of one case: first call, then up to ``repeats`` warm runs each.

  With ``isolate`` every variant is built and called once in a worker of its
  own (one at a time); then the rounds alternate the variants, so that a
  change in the machine's load falls on all of them rather than on one. In
  this process a variant's first call clears JAX's caches, which would make
  the others compile again: each variant is timed to the end before the next
  is built. A variant gets as many warm runs as its ``repeats`` and
  ``budget`` allow, judged by its first warm run (see ``_repeats``).
  """
  specs = [{**s, "fresh_process": isolate} for s in specs]
  if not isolate:
    from jaxuq.experiments.bench import peers  # noqa: PLC0415

    results = [_run_local(spec) for spec in specs]
    peers.release_memory()
    return results
  runners = [_Worker(spec) for spec in specs]
  todo = [0] * len(runners)
  for i, (runner, spec) in enumerate(zip(runners, specs, strict=True)):
    warm = None if _failed(runner.info) else runner.time_once()
    todo[i] = 0 if warm is None else _repeats(spec, warm)
  for round_ in range(1, max(todo, default=0)):
    for i, runner in enumerate(runners):
      if round_ < todo[i] and runner.time_once() is None:
        todo[i] = 0
  return [r.finish() for r in runners]


def _run_local(spec: dict) -> dict:
  runner = _Local(spec)
  warm = None if _failed(runner.info) else runner.time_once()
  if warm is not None:
    for _ in range(_repeats(spec, warm) - 1):
      if runner.time_once() is None:
        break
  return runner.finish()
