"""The database layer: schema flywheel in the platform's PostgreSQL, and everything that talks to it.

What a DBA asks about lives here: which views and functions each release holds (``releases``) and how
a migration puts them in place (``objects``), how the schema is installed and upgraded (``migrate``),
how the metrics are recomputed (``refresh``), what the metrics need of the platform's tables
(``check``), the settings (``settings``), and connecting (``db`` through SQLAlchemy, ``pg`` through
psycopg alone for the commands cron starts).

Importing the package imports none of its modules: each command loads only what it uses.
"""
