"""Static fingerprints and portable digests: attribute reads, object state, bytecode, bounds."""

import dataclasses
import enum
import json
import os
import subprocess
import sys
import textwrap
import types

import numpy as np
import optax
import pytest

from jaxuq._src import static
from jaxuq._src.static import Static, digest, value_entries, without_later_keys
from jaxuq.models import MLP


class _Config:
  def __init__(self, lr):
    self.lr = lr


class _ClassConfig:
  lr = 1e-2


CONFIG_MODULE = types.ModuleType("jaxuq_test_config")  # a configuration module made at run time
CONFIG_MODULE.LR = 1e-2
CONFIG = _Config(1e-2)


@pytest.mark.parametrize(
  ("where", "name", "reader"),
  [
    (CONFIG, "lr", lambda step: CONFIG.lr),
    (_ClassConfig, "lr", lambda step: _ClassConfig.lr),
    (CONFIG_MODULE, "LR", lambda step: CONFIG_MODULE.LR),
  ],
  ids=["object", "class", "module"],
)
def test_attributes_a_function_reads_enter_its_fingerprint(monkeypatch, where, name, reader):
  # The walk fingerprinted plain objects by identity and classes and modules by name.
  before = Static(optax.sgd(reader))
  assert Static(optax.sgd(reader)) == before  # equal settings: one compilation
  monkeypatch.setattr(where, name, 1.0)
  after = Static(optax.sgd(reader))
  assert after != before
  assert digest(reader, values=True) != digest(lambda step: 1e-2, values=True)
  monkeypatch.undo()
  assert Static(optax.sgd(reader)) == before


class _Schedule:
  def __init__(self, lr):
    self.lr = lr

  def __call__(self, step):
    return self.lr * self.factor

  factor = 1.0


def test_a_mutated_object_is_another_setting():
  schedule = _Schedule(1e-2)
  before = Static(optax.sgd(schedule))
  assert Static(optax.sgd(schedule)) == before
  schedule.lr = 1.0
  assert Static(optax.sgd(schedule)) != before
  schedule.lr = 1e-2
  assert Static(optax.sgd(schedule)) == before
  _Schedule.factor = 2.0  # a class attribute its __call__ reads
  try:
    assert Static(optax.sgd(schedule)) != before
  finally:
    _Schedule.factor = 1.0
  assert Static(optax.sgd(_Schedule(1e-2))) != before  # another object: by identity


@dataclasses.dataclass
class _Widths:
  widths: list


def test_an_unhashable_dataclass_compares_by_its_fields():
  a, b = _Widths([4, 4]), _Widths([4, 4])
  assert Static(a) == Static(b) and hash(Static(a)) == hash(Static(b))
  assert Static(a) != Static(_Widths([4, 5]))
  before = Static(a)
  a.widths.append(3)  # mutated in place: another setting
  assert Static(a) != before
  assert Static(MLP(depth=1, width=4)) == Static(MLP(depth=1, width=4))
  assert Static(MLP(depth=1, width=4)) != Static(MLP(depth=1, width=5))


class _Color(enum.Enum):
  RED = 1
  BLUE = 2


def test_portable_digests_read_values_and_enums():
  @dataclasses.dataclass(frozen=True)
  class Hyper:
    lr: float

  small, big = Hyper(1e-2), Hyper(1.0)
  # The deep digest (what checkpoints held) named the object by its type only.
  assert digest(lambda s: small.lr, deep=True) == digest(lambda s: big.lr, deep=True)
  assert digest(lambda s: small.lr, values=True) != digest(lambda s: big.lr, values=True)
  assert digest((_Color.RED,), values=True) != digest((_Color.BLUE,), values=True)


def test_bytecode_enters_only_the_bytecode_digest():
  def halving(s):
    return 0.01 * 2.0 ** (s / 2)

  def stepwise(s):
    return 0.01 * 2.0 ** (s // 2)

  stepwise.__qualname__ = halving.__qualname__
  assert digest(halving, values=True) == digest(stepwise, values=True)
  assert digest(halving, bytecode=True) != digest(stepwise, bytecode=True)


def test_walks_are_bounded():
  class Many:
    pass

  many = Many()
  for i in range(static._MAX_FIELDS + 1):
    setattr(many, f"a{i}", i)
  assert Static(many) == Static(many) and Static(many) != Static(Many())  # identity
  node = Many()
  node.next = node  # a cycle
  assert Static(node) == Static(node)
  digest(node, values=True)
  chain = Many()
  for _ in range(static._MAX_DEPTH + 5):
    link = Many()
    link.next = chain
    chain = link
  assert Static(chain) == Static(chain)
  big = [Many() for _ in range(static._MAX_NODES + 10)]
  assert len(digest(big, values=True)) == 16


def test_the_bytecode_entry_is_compared_under_the_same_python_only():
  entries = value_entries(optax.adam(1e-3), "mse", MLP(depth=1, width=4))
  assert entries["python_code"]["python"] == "{}.{}".format(*sys.version_info[:2])
  found = json.loads(json.dumps(entries))
  other = {**found, "python_code": {"python": found["python_code"]["python"], "digest": "0"}}
  assert without_later_keys(other, entries) != other  # same Python: compared
  older = {**found, "python_code": {"python": "3.0", "digest": "0"}}
  assert without_later_keys(older, entries) == older  # another Python: not compared
  assert without_later_keys({"model": "x"}, entries) == {}  # written before the entries


_PROCESS = textwrap.dedent(
  """
  import dataclasses, json, sys
  import flax.linen as nn
  import jax
  import optax
  from jaxuq._src.static import value_entries
  from jaxuq.models import MLP
  from jaxuq.train import gaussian_nll

  @dataclasses.dataclass(frozen=True)
  class Hyper:
    lr: float

  hp = Hyper(float(sys.argv[1]))
  tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(lambda s: hp.lr))
  loss = jax.vmap(lambda o, t: 2.0 * gaussian_nll(o, t))
  print(json.dumps(value_entries(tx, loss, MLP(2, 8, 2, activation=nn.relu))))
  """
)


def test_value_entries_agree_across_processes_and_tell_values_apart():
  # Library callables (``nn.relu``, a ``jax.vmap``-ed loss) reach JAX's dicts keyed by
  # types, filled in an order that followed string hashing: a resume in another
  # process was refused for a model with ``activation=nn.relu`` about half the time.
  def entries(lr, seed):
    env = {**os.environ, "PYTHONHASHSEED": seed}
    out = subprocess.run([sys.executable, "-c", _PROCESS, lr], capture_output=True, text=True,
                         check=True, env=env)  # fmt: skip
    return json.loads(out.stdout)

  first, second, other = entries("0.01", "1"), entries("0.01", "2"), entries("1.0", "1")
  assert first == second
  assert first["optimizer_values"] != other["optimizer_values"]
  assert first["loss_values"] == other["loss_values"]
  assert first["model_values"] == other["model_values"]


def test_library_folders_end_at_a_separator(monkeypatch, tmp_path):
  # A project in /usr/src/app beside a system Python under /usr counted as a library
  # (all of sys.prefix), and "/x/lib/python3.11-app" as inside "/x/lib/python3.11":
  # the configuration objects of its modules went unread.
  assert all(p.endswith(os.sep) for p in static._library_paths())
  lib = tmp_path / "lib" / "python3.11"
  lib.mkdir(parents=True)
  monkeypatch.setattr(static, "_library_paths", lambda: (os.path.join(str(lib), ""),))
  inside, beside = types.ModuleType("inside"), types.ModuleType("beside")
  inside.__file__ = str(lib / "pkg" / "m.py")
  beside.__file__ = str(tmp_path / "lib" / "python3.11-app" / "m.py")
  assert static._is_library_module(inside) and not static._is_library_module(beside)


def test_dicts_whose_keys_do_not_sort_digest_alike_in_any_order():
  assert digest({int: 1, str: 2}) == digest({str: 2, int: 1})
  assert digest({int: 1, str: 2}) != digest({str: 1, int: 2})
  assert digest({1: "a", "b": 2}, values=True) == digest({"b": 2, 1: "a"}, values=True)

  def local_class():
    class K:
      pass

    return K

  a, b = local_class(), local_class()  # two classes that walk alike (one qualified name)
  assert digest({a: 1, b: 2, int: 0}) == digest({b: 2, a: 1, int: 0})


def test_sets_and_frozen_dicts_enter_portable_digests_by_their_contents():
  # Both were digested by their type alone: a checkpoint written with one setting resumed
  # with another (a FrozenDict of schedules, a frozenset of masked parameter names).
  from flax.core import FrozenDict  # noqa: PLC0415

  assert digest({1, 2}, values=True) != digest({3}, values=True)
  assert digest(frozenset({"w"}), deep=True) != digest(frozenset({"b"}), deep=True)
  assert list({1, 9}) != list({9, 1})  # iteration order follows insertion on a collision
  assert digest({1, 9}, values=True) == digest({9, 1}, values=True)
  one, two = FrozenDict({"lr": lambda s: 1e-3}), FrozenDict({"lr": lambda s: 1e-2})
  assert digest(one, values=True) != digest(two, values=True)
  assert digest(one, values=True) == digest(FrozenDict({"lr": lambda s: 1e-3}), values=True)
  environ = os.environ  # a mutable library mapping: process state, not read
  before = digest(environ, values=True)
  os.environ["JAXUQ_TEST_UNRELATED"] = "1"
  try:
    assert digest(environ, values=True) == before
  finally:
    del os.environ["JAXUQ_TEST_UNRELATED"]


def test_object_arrays_are_digested_by_their_items():
  # Their bytes are pointers, different in every process (a resume was refused).
  class Labels:
    def __init__(self):
      self.names = np.array(["cat", "dog"], dtype=object)

  a, b = Labels(), Labels()
  b.names = np.array(["".join(["c", "at"]), "".join(["d", "og"])], dtype=object)  # new objects
  assert digest(lambda: a.names, values=True) == digest(lambda: b.names, values=True)
  b.names[1] = "cow"
  assert digest(lambda: a.names, values=True) != digest(lambda: b.names, values=True)
