"""Commands for Grafana and Prometheus: grafana (writes the dashboard and provisioning), serve (the stats server)."""

from __future__ import annotations

from pathlib import Path

import click

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
    from ..outputs import grafana as dashboards

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


def _serve_options(command):
    for option in reversed([
        click.option("--host", default="127.0.0.1", show_default=True,
                     help="Address to listen on; 0.0.0.0 for every interface (Prometheus on another machine)."),
        click.option("--port", type=click.IntRange(0, 65535), default=9188, show_default=True,
                     help="Port to listen on; 0 picks a free one."),
        click.option("--with-timestamps", is_flag=True,
                     help="Give each flywheel sample the refresh time, as the old service did; the series then "
                          "vanish 5 minutes after the refresh stalls (see docs/stats-server.md)."),
        click.option("--deadline", type=click.FloatRange(0.2, 60), default=8.0, show_default=True, metavar="SECONDS",
                     help="Longest wait for the database per request; a shorter Prometheus scrape timeout "
                          "(less 0.5 s) wins."),
        click.option("--workers", type=click.IntRange(1, 1024), default=64, show_default=True,
                     help="Requests served at the same time."),
        click.option("--refresh-interval", type=click.IntRange(1), default=60, show_default=True, metavar="SECONDS",
                     help="How often the metrics are refreshed: the JSON answers may be cached until the next refresh."),
        database_url,
    ]):
        command = option(command)
    return command


def _serve(database_url: str | None, host: str, port: int, with_timestamps: bool, deadline: float, workers: int,
           refresh_interval: int) -> None:
    import logging

    from ..outputs import stats_server as stats

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    options = stats.ServerOptions(with_timestamps=with_timestamps, deadline=deadline, workers=workers,
                                  refresh_interval=refresh_interval)
    stats.serve(database_url, host, port, options, click.echo)


@click.command()
@_serve_options
def serve(**options) -> None:
    """Serve the metrics over HTTP: Prometheus's /metrics and the old JSON API.

    \b
    /metrics, /metrics/flywheel   the Prometheus text of flywheel.prometheus_text(), plus
                                  awoooi_flywheel_up (0 when the database cannot be read in time)
    /api/v1/stats/summary         exactly flywheel.summary_json(); 503 with Retry-After when unreadable
    /api/v1/stats/flywheel        exactly flywheel.flywheel_json(); likewise
    /healthz                      liveness (no database)

    Read-only: a login granted flywheel_reader is enough. Each request waits for the database at
    most --deadline seconds (or Prometheus's scrape timeout less 0.5 s) and then answers anyway. Logs
    one line whenever the database's state changes. Stops on Ctrl-C or SIGTERM.

    \b
    Example:
        flywheel-sync serve --host 0.0.0.0 --port 9188
        curl -s localhost:9188/metrics | grep awoooi_flywheel_up
        curl -s localhost:9188/api/v1/stats/summary | jq .playbook_count
    """
    _serve(**options)


@click.command()
@_serve_options
def exporter(**options) -> None:
    """The former name of `serve`, kept for existing units and scripts.

    \b
    Example:
        flywheel-sync exporter --port 9188
    """
    _serve(**options)


COMMANDS = (grafana, serve, exporter)
