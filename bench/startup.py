"""How long the command line takes to start (issue 13): `flywheel-sync --version`, `--help`, and
`refresh` less its database time, with the imports that cost the most.

Each command runs as its own process, as cron runs it (`python -m flywheel_sync`, the console
script's imports), --repeat times; the table gives the median and the min-max of the wall times. A
refresh's database time is what its --json reports (finished_at - started_at of flywheel.refresh());
the rest, "beyond the database", is Python starting, importing, connecting and printing. `python -c
pass` is the floor no command can go below. The imports are `python -X importtime` of one refresh:
the top-level modules by cumulative time.

    .venv/bin/python bench/startup.py                      # on the S data set (built when absent)
    .venv/bin/python bench/startup.py --source /tmp/old    # another checkout's flywheel_sync, same venv

--source puts a checkout's folder first on PYTHONPATH, so the same interpreter and libraries run
another version of the code (the "before" of docs/performance.md).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime

import dataset

TARGETS_MS = {"--version": 150, "refresh, beyond the database": 250}


def _environment(source: str | None, url: str) -> dict[str, str]:
    environment = {**os.environ, "FLYWHEEL_DATABASE_URL": url}
    if source:
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [source, environment.get("PYTHONPATH")]))
    return environment


def _timed(arguments: list[str], environment: dict[str, str]) -> tuple[float, str]:
    """Wall milliseconds of one process, and its standard output."""
    started = time.perf_counter()
    run = subprocess.run([sys.executable, *arguments], capture_output=True, text=True, env=environment)
    elapsed = (time.perf_counter() - started) * 1000
    if run.returncode != 0:
        raise SystemExit(f"{' '.join(arguments)} failed: {run.stderr.strip()}")
    return elapsed, run.stdout


def _database_ms(refresh_json: str) -> float:
    raw = json.loads(refresh_json)
    started, finished = (datetime.fromisoformat(raw[key]) for key in ("started_at", "finished_at"))
    return (finished - started).total_seconds() * 1000


def measure(url: str, source: str | None, repeats: int) -> dict[str, list[float]]:
    environment = _environment(source, url)
    command = ["-m", "flywheel_sync"]
    _timed([*command, "refresh", "--json"], environment)  # the first refresh of a database is full
    samples: dict[str, list[float]] = {name: [] for name in
                                       ("python -c pass", "--version", "--help", "refresh (wall)",
                                        "refresh, database", "refresh, beyond the database")}
    for _ in range(repeats):  # interleaved, so a burst of load spreads over every row
        samples["python -c pass"].append(_timed(["-c", "pass"], environment)[0])
        samples["--version"].append(_timed([*command, "--version"], environment)[0])
        samples["--help"].append(_timed([*command, "--help"], environment)[0])
        wall, output = _timed([*command, "refresh", "--json"], environment)
        database = _database_ms(output)
        samples["refresh (wall)"].append(wall)
        samples["refresh, database"].append(database)
        samples["refresh, beyond the database"].append(wall - database)
    return samples


def top_imports(url: str, source: str | None, count: int) -> list[tuple[str, float]]:
    """The top-level imports of one refresh with the most cumulative milliseconds."""
    run = subprocess.run([sys.executable, "-X", "importtime", "-m", "flywheel_sync", "refresh", "--json"],
                         capture_output=True, text=True, env=_environment(source, url))
    imports = []
    for line in run.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line.removeprefix("import time:").split("|")
        if not name.startswith("  "):  # one space after the bar: imported by the program, not by a module
            imports.append((name.strip(), int(cumulative) / 1000))
    return sorted(imports, key=lambda item: -item[1])[:count]


def render(samples: dict[str, list[float]], imports: list[tuple[str, float]]) -> str:
    lines = [f"{'command':<30} {'median ms':>10} {'min-max ms':>16} {'target':>8}"]
    for name, values in samples.items():
        target = TARGETS_MS.get(name)
        lines.append(f"{name:<30} {statistics.median(values):>10.0f} "
                     f"{f'{min(values):.0f}-{max(values):.0f}':>16} {f'<= {target}' if target else '':>8}")
    lines += ["", "top-level imports of one `refresh` (python -X importtime, cumulative ms):"]
    lines += [f"  {name:<40} {ms:>8.1f}" for name, ms in imports]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=["S", "M", "L"], default="S", help="data set the refresh runs on")
    parser.add_argument("--postgres", choices=dataset.POSTGRES_KINDS, default="embedded")
    parser.add_argument("--repeat", type=int, default=9, help="runs of each command (default 9)")
    parser.add_argument("--source", metavar="DIR", help="run the flywheel_sync of another checkout")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    options = parser.parse_args()
    url = dataset.ensure(dataset.postgres_server(options.postgres), options.scale,
                         lambda message: print(message, file=sys.stderr))
    samples = measure(url, options.source, options.repeat)
    imports = top_imports(url, options.source, 12)
    load = os.getloadavg()
    if options.json:
        print(json.dumps({"samples_ms": samples, "top_imports_ms": imports, "load": load}, indent=2))
        return
    print(f"CLI start-up, scale {options.scale}, {options.repeat} runs each, load {load[0]:.1f} {load[1]:.1f} "
          f"{load[2]:.1f} on {os.cpu_count()} cores\n")
    print(render(samples, imports))


if __name__ == "__main__":
    main()
