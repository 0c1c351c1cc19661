"""Errors of the data layer."""

from __future__ import annotations


class SourceUnavailable(LookupError):
  """One data source has no data here (not installed, not prepared, not fetched)."""


class DataNotFoundError(FileNotFoundError):
  """No source could provide a dataset; the message lists what was tried and the fix."""
