"""Atomic checkpoints of pytrees (train states) with flax's msgpack serialization.

A checkpoint is one file: a magic header, the sha256 of the payload, then the
payload (msgpack of the pytree and a JSON metadata string). Restoring checks
the header and the hash before decoding anything, so a corrupted, truncated or
empty file raises :class:`CheckpointError` naming it, never a silently
different state. The file is written to a temporary file in the same folder, flushed and fsynced,
then renamed over the old one with ``os.replace`` (atomic on POSIX and
Windows) and the folder fsynced: a crash at any moment leaves either the old
checkpoint or the new one, never a torn file. A readable copy of the metadata
is written beside it (``<path>.json``); the msgpack file is authoritative.

Typed PRNG keys are stored as their raw key data and rewrapped on restore with
the implementation of the template's key.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pathlib
import tempfile
from typing import Any

import jax
import jax.numpy as jnp
from flax import serialization

FORMAT_VERSION = 2
MAGIC = b"jaxuq-checkpoint\x00\x02"
_DIGEST = 32  # sha256


class CheckpointError(ValueError):
  """A checkpoint file that cannot be restored: corrupted, truncated, empty, or not jaxuq's."""


def _is_key(leaf: Any) -> bool:
  return isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _keys_to_data(tree: Any) -> Any:
  return jax.tree.map(lambda a: jax.random.key_data(a) if _is_key(a) else a, tree)


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
  """Writes ``data`` to ``path`` atomically (temporary file, fsync, ``os.replace``)."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.unlink(tmp)
    raise
  if os.name == "posix":  # make the rename itself durable
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
      os.fsync(dir_fd)
    finally:
      os.close(dir_fd)


def save_checkpoint(
  path: str | os.PathLike, tree: Any, metadata: dict[str, Any] | None = None
) -> pathlib.Path:
  """Saves a pytree (e.g. a ``TrainState``) and JSON metadata atomically.

  Args:
    path: the checkpoint file (conventionally ``*.msgpack``); its folder is created.
    tree: a pytree of arrays (struct dataclasses, dicts, NamedTuples, typed keys).
    metadata: JSON-serialisable facts to keep with it (epoch, history, config).

  Returns:
    The checkpoint's path.

  Raises:
    TypeError: ``metadata`` is not JSON-serialisable.
  """
  path = pathlib.Path(path)
  meta_json = json.dumps({"format": FORMAT_VERSION, **(metadata or {})})
  state = serialization.to_state_dict(_keys_to_data(jax.device_get(tree)))
  payload = serialization.msgpack_serialize({"tree": state, "metadata": meta_json})
  atomic_write(path, MAGIC + hashlib.sha256(payload).digest() + payload)
  atomic_write(path.with_name(path.name + ".json"), (meta_json + "\n").encode())
  return path


def restore_checkpoint(path: str | os.PathLike, target: Any) -> tuple[Any, dict[str, Any]]:
  """Restores a pytree saved by :func:`save_checkpoint`.

  Args:
    path: the checkpoint file.
    target: a pytree of the same structure (e.g. a freshly initialised state),
      which gives the node types and the key implementations.

  Returns:
    ``(tree, metadata)``.

  Raises:
    FileNotFoundError: there is no checkpoint at ``path``.
    CheckpointError: the file is corrupted, truncated, empty or not a jaxuq
      checkpoint (its integrity hash does not match), or does not match
      ``target``. A subclass of ``ValueError``.
  """
  path = pathlib.Path(path)
  raw, metadata = _read(path)
  template = _keys_to_data(target)
  extra = _paths(raw["tree"]) - _paths(serialization.to_state_dict(template))
  if extra:  # from_state_dict would drop them without a word
    shown = ", ".join("/".join(map(str, k)) for k in sorted(extra, key=str)[:5])
    raise CheckpointError(
      f"checkpoint {path} does not match the target's structure: it holds entries the target "
      f"does not have ({shown}{', ...' if len(extra) > 5 else ''}); it was written for "
      "another model or optimizer"
    )
  try:
    restored = serialization.from_state_dict(template, raw["tree"])
  except (ValueError, KeyError, TypeError) as e:
    raise CheckpointError(f"checkpoint {path} does not match the target's structure: {e}") from e

  def rewrap(template: Any, value: Any) -> Any:
    expected = jnp.shape(jax.random.key_data(template) if _is_key(template) else template)
    if jnp.shape(value) != expected:
      raise CheckpointError(
        f"checkpoint {path} does not match the target: an array of shape "
        f"{jnp.shape(value)} where the target has {expected}"
      )
    if _is_key(template):
      return jax.random.wrap_key_data(jnp.asarray(value), impl=jax.random.key_impl(template))
    want = jnp.result_type(template)
    if jnp.result_type(value) != want:
      raise CheckpointError(
        f"checkpoint {path} does not match the target: an array of dtype "
        f"{jnp.result_type(value)} where the target has {want}"
      )
    return jnp.asarray(value)

  tree = jax.tree.map(rewrap, target, restored)
  return tree, metadata


def _paths(tree: Any) -> set[tuple]:
  """The key paths of a state dict's leaves (and of its empty dicts)."""
  if not isinstance(tree, dict):
    return {()}
  if not tree:
    return {()}
  return {(k, *rest) for k, v in tree.items() for rest in _paths(v)}


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
  """The metadata of a checkpoint saved by :func:`save_checkpoint`, without its arrays' target.

  Read from the checkpoint itself (its integrity hash checked), not from the
  ``<path>.json`` copy beside it.

  Raises:
    FileNotFoundError: there is no checkpoint at ``path``.
    CheckpointError: the file is corrupted, truncated or not a jaxuq checkpoint.
  """
  return _read(pathlib.Path(path))[1]


def _read(path: pathlib.Path) -> tuple[dict[str, Any], dict[str, Any]]:
  """The checkpoint's raw ``{'tree', 'metadata'}`` and its metadata, the hash checked."""
  payload = _verified_payload(path, path.read_bytes())
  try:
    raw = serialization.msgpack_restore(payload)
    if not isinstance(raw, dict) or set(raw) != {"tree", "metadata"}:
      raise ValueError("expected the keys 'tree' and 'metadata'")
    return raw, json.loads(raw["metadata"])
  except Exception as e:  # the hash matched, so this is a file written by something else
    raise CheckpointError(f"{path} is not a jaxuq checkpoint: {e}") from e


def _verified_payload(path: pathlib.Path, data: bytes) -> bytes:
  """The payload of a checkpoint file after checking its header and sha256."""
  head = len(MAGIC) + _DIGEST
  if not data:
    raise CheckpointError(f"checkpoint {path} is empty (0 bytes); delete it or use another path")
  if not data.startswith(MAGIC):
    raise CheckpointError(
      f"{path} is not a jaxuq checkpoint (format {FORMAT_VERSION}): its header is wrong, so it "
      "is corrupted, truncated, or was written by something else or an older jaxuq"
    )
  if len(data) < head:
    raise CheckpointError(f"checkpoint {path} is truncated ({len(data)} bytes)")
  payload = data[head:]
  if hashlib.sha256(payload).digest() != data[len(MAGIC) : head]:
    raise CheckpointError(
      f"checkpoint {path} is corrupted or truncated: the sha256 of its {len(payload)} bytes "
      "does not match the one stored in it; delete it (or restore a copy) and train again"
    )
  return payload
