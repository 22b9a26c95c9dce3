"""``python -m edge_runtime.cli``: the same as the ``edge-runtime`` command."""

from edge_runtime.cli import main

raise SystemExit(main())
