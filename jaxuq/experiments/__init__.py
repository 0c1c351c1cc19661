"""The experiments behind the ``jaxuq`` command (top layer: nothing imports them)."""
