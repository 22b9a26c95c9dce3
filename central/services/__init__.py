"""Central's service layer: every read the API answers from and every write it makes.

Routes (``central/api/routes``) only parse the request, call one function here and map the
answer to a ``…Public`` schema; the CLI calls the same functions, so the API and
``edgeseg-central`` cannot drift apart (full-stack-fastapi-template's ``crud`` idea, one module
per resource):

- ``devices``  register, revoke, list; a device's model reports
- ``results``  store a batch of results exactly once (the watermark)
- ``outcomes`` what actually happened to customers
- ``drift``    PSI of a device's histograms against the manifest reference
- ``models``   register signed artifacts, roll them out, serve their files
- ``stats``    the read-only numbers head office looks at

Write functions commit their own transaction. A refusal raises a ``ServiceError`` subclass
(``errors.py``) that carries its HTTP status and ``detail`` text; ``central.main`` turns it into
the JSON error answer, so no route needs a ``try``.
"""
