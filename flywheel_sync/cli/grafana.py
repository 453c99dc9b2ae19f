"""Commands for Grafana and Prometheus: grafana (writes the dashboard and provisioning), exporter."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from .. import exporter as prometheus
from .. import grafana as dashboards
from .options import database_url


@click.command()
@click.option("--output", type=click.Path(file_okay=False, path_type=Path), default=Path("grafana"),
              show_default=True, help="Folder to write (the checked-in grafana/ of a checkout).")
@click.option("--check", is_flag=True,
              help="Write nothing; exit 1 when a file in the folder differs from what would be written.")
def grafana(output: Path, check: bool) -> None:
    """Write the Grafana dashboard, provisioning files and Prometheus rules.

    Generates, under the folder: provisioning/datasources, provisioning/dashboards and
    provisioning/alerting (for Grafana's provisioning path), dashboards/flywheel.json and
    prometheus/flywheel-rules.yml. Point grafana-server at them as docs/grafana.md shows. Needs no
    database.

    \b
    Example:
        flywheel-sync grafana
        flywheel-sync grafana --check      # in CI: is grafana/ up to date?
    """
    if check:
        stale = dashboards.differences(output)
        for relative in stale:
            click.echo(f"{output / relative} differs from the generated file")
        if stale:
            click.echo("Run `flywheel-sync grafana` and commit the folder.")
            raise click.exceptions.Exit(1)
        click.echo(f"{output} is up to date")
        return
    changed = dashboards.write(output)
    click.echo(f"wrote {output}: " + (", ".join(changed) + " changed" if changed else "nothing changed"))


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; 0.0.0.0 for every interface (Prometheus on another machine).")
@click.option("--port", type=click.IntRange(0, 65535), default=9188, show_default=True,
              help="Port to listen on; 0 picks a free one.")
@click.option("--with-timestamps", is_flag=True,
              help="Give each sample the refresh time, as the old service did (see docs/exporter.md).")
@database_url
def exporter(database_url: str | None, host: str, port: int, with_timestamps: bool) -> None:
    """Serve the metrics for Prometheus at http://HOST:PORT/metrics.

    Each scrape reads flywheel.prometheus_text() (the last refresh) and adds the exporter's health:
    awoooi_flywheel_up is 0 when the database cannot be read, and the scrape still succeeds. Stops on
    Ctrl-C or SIGTERM.

    \b
    Example:
        flywheel-sync exporter --port 9188
        curl -s localhost:9188/metrics | grep awoooi_flywheel_up
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    prometheus.serve(database_url, host, port, with_timestamps, click.echo)


COMMANDS = (grafana, exporter)
