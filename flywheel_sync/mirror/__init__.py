"""The playbook mirror: flywheel.playbooks kept equal to the Redis playbook records.

Three questions, one module each: is one record valid and why not (``validation``), how one pass
makes the table equal to Redis (``sync_pass``), and how ``sync --follow`` keeps it so from keyspace
notifications (``worker``, with ``refresh_schedule`` deciding when it also refreshes the metrics).

Importing the package imports none of its modules: each command loads only what it uses.
"""
