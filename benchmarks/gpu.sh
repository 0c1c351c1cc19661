#!/usr/bin/env bash
# jaxuq on a GPU machine: the whole test suite, then `jaxuq bench --grid gpu`.
#
#   bash benchmarks/gpu.sh OUTDIR
#
# Runs from the repository root with the Python found there (jaxuq from source:
# PYTHONPATH is the checkout; no install, no network) and writes, flat:
#   OUTDIR/env.txt     nvidia-smi, versions, JAX's devices
#   OUTDIR/pytest.log  python3 -m pytest -n 8 -q -p no:cacheprovider -rfE --tb=short
#                      --continue-on-collection-errors
#   OUTDIR/junit.xml   the same, per test
#   OUTDIR/bench.log   python3 -m jaxuq bench --grid gpu --out OUTDIR
#   OUTDIR/bench.json, bench.md, speedup.png (speedup.png only with matplotlib)
# Everything within about 9 minutes: tests capped at TEST_TIMEOUT s, the bench
# at what is left (it starts no new case near its end and writes its JSON after
# every case). Exits 0 whatever the tests say; the last lines summarise each stage.
#
# Environment: SKIP_TESTS=1 skips the tests, SKIP_BENCH=1 the bench (a machine
# whose suite needs the whole 9 minutes); GRID=tiny runs the bench's toy grid
# (CI runs this script on a CPU so); TEST_TIMEOUT (default 240), TOTAL_TIMEOUT
# (default 530, seconds for the whole script); PYTHON (default python3); JOBS
# (pytest workers, default 8); TESTS (test paths, default the whole suite).
set -u
out=${1:?usage: bash benchmarks/gpu.sh OUTDIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
grid=${GRID:-gpu}
jobs=${JOBS:-8}
test_timeout=${TEST_TIMEOUT:-240}
total=${TOTAL_TIMEOUT:-530}
start=$SECONDS
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" XLA_PYTHON_CLIENT_PREALLOCATE=false
export PYTHONUNBUFFERED=1

# jaxuq imports tqdm for its progress bars; a machine without it gets a silent
# stand-in (outside OUTDIR) so that the tests and the bench can run at all.
note=""
if ! "$py" -c "import tqdm" 2>/dev/null; then
  stub=$(mktemp -d)
  mkdir -p "$stub/tqdm"
  cat >"$stub/tqdm/auto.py" <<'EOF'
"""A silent stand-in for tqdm (benchmarks/gpu.sh: tqdm is not installed here)."""


class tqdm:
  def __init__(self, iterable=None, *args, **kwargs):
    self.iterable = iterable

  def __iter__(self):
    return iter(self.iterable)

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    return False

  def update(self, n=1):
    pass

  def set_postfix(self, *args, **kwargs):
    pass

  def close(self):
    pass
EOF
  echo "from tqdm.auto import tqdm" >"$stub/tqdm/__init__.py"
  export PYTHONPATH="$PYTHONPATH:$stub"
  note="tqdm is not installed: a silent stand-in from $stub was put on PYTHONPATH"
fi

{
  echo "date: $(date -u)"
  echo "repo: $PWD (git $(git rev-parse --short HEAD 2>/dev/null || echo '?'))"
  echo "uname: $(uname -a)"
  echo "cpus: $(nproc)"
  [ -n "$note" ] && echo "NOTE: $note"
  echo
  if command -v nvidia-smi >/dev/null; then nvidia-smi; else echo "nvidia-smi: not found"; fi
  echo
  "$py" - <<'EOF'
import importlib.metadata as md, platform, sys
print("python", platform.python_version(), sys.executable)
for name in ("jax", "jaxlib", "jax-cuda12-plugin", "jax-cuda13-plugin", "flax", "optax", "numpy",
             "torch", "keras", "tqdm", "matplotlib", "scikit-learn", "pytest", "pytest-xdist",
             "hypothesis"):
  try:
    print(f"{name} {md.version(name)}")
  except md.PackageNotFoundError:
    print(f"{name} (not installed)")
try:
  import jax
  print("jax devices:", jax.devices(), "kind:", jax.devices()[0].device_kind)
  print("jax default matmul precision:", jax.config.jax_default_matmul_precision)
except Exception as e:  # noqa: BLE001
  print("jax failed:", type(e).__name__, e)
try:
  import torch
  print("torch cuda:", torch.cuda.is_available(), torch.version.cuda)
except Exception as e:  # noqa: BLE001
  print("torch:", type(e).__name__, e)
EOF
} >"$out/env.txt" 2>&1
env_line="env: $(grep -m1 'jax devices' "$out/env.txt" || echo 'jax devices unknown')"

if [ "${SKIP_TESTS:-0}" = 1 ]; then
  test_line="tests: skipped (SKIP_TESTS=1)"
else
  t0=$SECONDS
  # A test file that cannot be imported there (an optional package missing) is
  # reported as an error; the other files still run.
  # SIGINT first: pytest then stops as on Ctrl-C and still writes its summary and junit.xml
  # (a SIGTERM left neither); -k kills it 20 s later if it does not stop.
  timeout -s INT -k 20 "$test_timeout" "$py" -m pytest -n "$jobs" -q -p no:cacheprovider -rfE \
    --tb=short --continue-on-collection-errors --junitxml "$out/junit.xml" ${TESTS:-} \
    >"$out/pytest.log" 2>&1
  rc=$?
  last=$(grep -E '(passed|failed|error)' "$out/pytest.log" | tail -n 1)
  if [ "$rc" = 124 ] || [ "$rc" = 137 ] || [ "$rc" = 2 ] && [ $((SECONDS - t0)) -ge "$test_timeout" ]; then
    test_line="tests: CUT at ${test_timeout} s (rc $rc); last: ${last:-nothing}"
  else
    test_line="tests: rc $rc in $((SECONDS - t0)) s: ${last:-see pytest.log}"
  fi
fi

left=$((total - (SECONDS - start)))
limit=$((left - 90 > 30 ? left - 90 : 30))  # no new case after this; the last one may take 90 s
t0=$SECONDS
if [ "${SKIP_BENCH:-0}" = 1 ]; then
  rc="skipped (SKIP_BENCH=1)"
elif [ "$left" -lt 60 ]; then  # `timeout 0` would not limit it at all, a negative one fails
  rc="skipped: only ${left} s of TOTAL_TIMEOUT=${total} left after the tests (raise it, or lower TEST_TIMEOUT)"
else
  timeout -k 10 "$left" "$py" -m jaxuq bench --grid "$grid" --time-limit "$limit" --out "$out" \
    >"$out/bench.log" 2>&1
  rc=$?
fi
bench_line="bench: rc $rc in $((SECONDS - t0)) s (budget $left s): $(
  "$py" - "$out/bench.json" <<'EOF' 2>&1
import json, sys
try:
  s = json.load(open(sys.argv[1]))
except (OSError, ValueError) as e:
  print(f"no bench.json ({type(e).__name__})")
  raise SystemExit
rows = s["rows"]
timed = sum("time_s" in r for r in rows)
from jaxuq.experiments.bench.report import failures  # a peer's error is a result, not a failure
bad = len(failures(rows))
met = sum(t["met"] for t in s.get("targets", []))
cut = s.get("cut_at_time_limit")
print(f"{len(rows)} rows, {timed} timed, {bad} jaxuq variants failed or mismatched; targets met "
      f"{met}/{len(s.get('targets', []))}" + (f"; not run (time limit): {cut}" if cut else ""))
EOF
)"

echo "$env_line"
echo "$test_line"
echo "$bench_line"
echo "total: $((SECONDS - start)) s; files in $out: $(ls "$out" | tr '\n' ' ')"
exit 0
