"""``python -m jaxuq``: the same as the ``jaxuq`` command."""

from jaxuq.cli import main

raise SystemExit(main())
