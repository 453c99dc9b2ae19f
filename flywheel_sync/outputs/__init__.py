"""What the computed metrics are read through: the summary and its JSON and Prometheus shapes
(``summary``), the textfile for node_exporter (``textfile``), the stats server's HTTP answers
(``stats_server``), and the Grafana dashboard with its Prometheus rules (``grafana``).

Each only reads what the refresh computed; none computes a metric of its own.
Importing the package imports none of its modules: each command loads only what it uses.
"""
