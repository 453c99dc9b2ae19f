"""Running flywheel-sync on one machine without a platform: what `make demo`, `make test` and
``bench/`` stand on.

Embedded PostgreSQL and Redis from PyPI wheels (``embedded``), a Debian PostgreSQL 15 cluster for
production conditions (``pgcluster``), sample platform data (``generate``, also `flywheel-sync
generate`), and the demo that puts them together (``demo``). A platform's deployment uses none of it.

Importing the package imports none of its modules: each command loads only what it uses.
"""
