"""Head office: the central service devices sync their results to (docs/DESIGN.md §5-6).

``central.main.create_app`` builds the FastAPI app; ``central.cli`` is ``edgeseg-central``.
Nothing here opens a database or reads the environment at import time.
"""

__all__: list[str] = []
