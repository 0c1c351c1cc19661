"""The jaxuq command's re-run with glibc's malloc on huge pages: when, how, and that it changes no number."""

import hashlib
import os
import pathlib
import subprocess
import sys

import pytest

from jaxuq._src import huge_pages
from jaxuq._src.huge_pages import TUNABLE, huge_pages_environ
from jaxuq.experiments.bench import report

ON_GLIBC = huge_pages.is_glibc()


def test_environ_adds_the_tunable():
  assert huge_pages_environ({"HOME": "/h"}, [], glibc=True) == {
    "HOME": "/h",
    "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1",
  }


def test_environ_keeps_other_tunables():
  env = huge_pages_environ({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, [], glibc=True)
  assert env == {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"}


@pytest.mark.parametrize(
  "tunables",
  [
    "glibc.malloc.hugetlb=0",
    "glibc.malloc.hugetlb=1",
    "glibc.mem.tagging=1:glibc.malloc.hugetlb=2",
  ],
)
def test_environ_leaves_a_users_hugetlb_alone(tunables):
  assert huge_pages_environ({"GLIBC_TUNABLES": tunables}, [], glibc=True) is None


def test_a_similar_name_is_not_hugetlb():
  env = huge_pages_environ({"GLIBC_TUNABLES": "glibc.malloc.hugetlbx=1"}, [], glibc=True)
  assert env is not None and env["GLIBC_TUNABLES"].endswith(":" + TUNABLE)


@pytest.mark.parametrize(
  "environ, argv, glibc",
  [
    ({}, [], False),  # musl, macOS, Windows
    ({"JAXUQ_NO_HUGE_PAGES": "1"}, [], True),
    ({}, ["bench", "--no-huge-pages"], True),
  ],
)
def test_environ_none_when_it_does_not_apply(environ, argv, glibc):
  assert huge_pages_environ(environ, argv, glibc) is None


def test_opt_out_zero_means_no_opt_out():
  assert huge_pages_environ({"JAXUQ_NO_HUGE_PAGES": "0"}, [], glibc=True) is not None


class _Exec(Exception):
  pass


def test_rerun_execs_the_same_command_line(monkeypatch):
  calls = []

  def fake_execve(path, args, env):
    calls.append((path, args, env))
    raise _Exec

  monkeypatch.setattr(os, "execve", fake_execve)
  monkeypatch.setattr(huge_pages, "is_glibc", lambda: True)
  monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
  monkeypatch.delenv("JAXUQ_NO_HUGE_PAGES", raising=False)
  with pytest.raises(_Exec):
    huge_pages.rerun_with_huge_pages(["quickstart"])
  ((path, args, env),) = calls
  assert path == sys.executable and args == sys.orig_argv
  assert env["GLIBC_TUNABLES"] == TUNABLE and env["PATH"] == os.environ["PATH"]
  monkeypatch.setenv("JAXUQ_NO_HUGE_PAGES", "1")
  huge_pages.rerun_with_huge_pages(["quickstart"])  # returns: opted out
  assert len(calls) == 1


def test_rerun_carries_on_when_exec_fails(monkeypatch):
  def failing_execve(path, args, env):
    raise PermissionError(13, "Permission denied", path)

  monkeypatch.setattr(os, "execve", failing_execve)
  monkeypatch.setattr(huge_pages, "is_glibc", lambda: True)
  monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
  monkeypatch.delenv("JAXUQ_NO_HUGE_PAGES", raising=False)
  assert huge_pages.rerun_with_huge_pages(["quickstart"]) is None
  monkeypatch.setattr(sys, "orig_argv", [])
  assert huge_pages.rerun_with_huge_pages(["quickstart"]) is None


_PRINT_THEN_MAIN = (
  "import os, sys; print('tunables', os.environ.get('GLIBC_TUNABLES'), flush=True); "
  "from jaxuq.cli import main; sys.argv = ['jaxuq', *sys.argv[1:]]; raise SystemExit(main())"
)


def _program(*args, **env_changes):
  env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "JAXUQ_NO_HUGE_PAGES")}
  env.update(env_changes)
  proc = subprocess.run(
    [sys.executable, "-c", _PRINT_THEN_MAIN, *args], capture_output=True, text=True, env=env
  )
  assert proc.returncode == 0, proc.stderr
  return [line for line in proc.stdout.splitlines() if line.startswith("tunables")], proc.stdout


@pytest.mark.skipif(not ON_GLIBC, reason="glibc tunables exist on glibc only")
def test_the_program_reruns_itself_once():
  lines, out = _program()
  assert lines == ["tunables None", f"tunables {TUNABLE}"]
  assert "COMMAND" in out  # the re-run went on to print the help


@pytest.mark.skipif(not ON_GLIBC, reason="glibc tunables exist on glibc only")
def test_the_program_does_not_rerun_when_told_not_to():
  assert _program("quickstart", "--no-huge-pages", "--help")[0] == ["tunables None"]
  assert _program(JAXUQ_NO_HUGE_PAGES="1")[0] == ["tunables None"]
  assert _program(GLIBC_TUNABLES="glibc.malloc.hugetlb=0")[0] == ["tunables glibc.malloc.hugetlb=0"]


BENCH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "bench_huge_pages.py"


@pytest.mark.slow
@pytest.mark.skipif(not ON_GLIBC, reason="glibc tunables exist on glibc only")
def test_huge_pages_change_no_number():
  """Two Adam steps of the active-learning CNN give the same bits with and without."""
  digests = []
  for tunables in (None, TUNABLE):
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join(
      filter(None, [str(BENCH.parents[1]), env.get("PYTHONPATH")])
    )
    if tunables:
      env["GLIBC_TUNABLES"] = tunables
    proc = subprocess.run(
      [sys.executable, str(BENCH), "--digest", "32", "2"], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stderr
    digests.append(proc.stdout.split()[-1])
  assert digests[0] == digests[1] and len(digests[0]) == len(hashlib.sha256().hexdigest())


def test_bench_report_names_the_malloc_setting():
  cpu = {"platform": "cpu", "glibc_tunables": TUNABLE}
  assert report._malloc(cpu) == f" GLIBC_TUNABLES: {TUNABLE}."
  assert report._malloc({**cpu, "glibc_tunables": None}) == " GLIBC_TUNABLES: unset."
  assert report._malloc({**cpu, "platform": "gpu"}) == ""
  assert report._malloc({"platform": "cpu"}) == ""  # a report from before the field
