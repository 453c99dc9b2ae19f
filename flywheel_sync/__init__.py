"""flywheel-sync, by the question a reader brings:

- ``database/``: schema flywheel, its objects and migrations, the refresh, the source contract;
- ``mirror/``: the Redis playbook records in flywheel.playbooks (validation, one pass, the worker);
- ``outputs/``: what reads the metrics (summary, textfile, stats server, Grafana);
- ``local/``: servers and sample data for the demo, the tests and the benchmarks;
- ``cli/``: the click commands, a thin layer over the above;
- ``errors``, ``urls``, ``paths``: what every part shares.

No package imports its modules eagerly, so `flywheel-sync --version` loads none of them.
"""

__version__ = "0.1.0"
