"""How long the command line takes to start (issue 13): `flywheel-sync --version`, `--help`, and
`refresh` less its database time, with the imports that cost the most.

Each command runs as its own process, as cron runs it (`python -m flywheel_sync`, the console
script's imports), --repeat times; the table gives the median and the min-max of the wall times. A
refresh's database time is what its --json reports (finished_at - started_at of flywheel.refresh());
the rest, "beyond the database", is Python starting, importing, connecting and printing. `python -c
pass` is the floor no command can go below. The CPU rows (user + system time of the process) are
what the load of a shared machine inflates least. The imports are `python -X importtime` of one refresh:
the top-level modules by cumulative time.

    .venv/bin/python bench/startup.py                       # on the S data set (built when absent)
    .venv/bin/python bench/startup.py --before /tmp/old     # and another checkout's, side by side

--before puts another checkout's folder first on PYTHONPATH, so the same interpreter and libraries
run that version of the code; its runs are interleaved with this one's, so both see the same load
(the "before" of docs/performance.md).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import dataset

CHECKOUT = Path(__file__).resolve().parent.parent
TARGETS_MS = {"--version": 150, "refresh, beyond the database": 250}


def _environment(source: str | None, url: str) -> dict[str, str]:
    environment = {**os.environ, "FLYWHEEL_DATABASE_URL": url}
    if source:
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [source, environment.get("PYTHONPATH")]))
    return environment


def _timed(arguments: list[str], environment: dict[str, str], folder: str | Path) -> tuple[float, float, str]:
    """Wall and CPU (user + system) milliseconds of one process, and its standard output.

    Run in ``folder``, the checkout it measures: `python -m` puts the working directory first on sys.path, so
    from another checkout it would import that one's flywheel_sync whatever PYTHONPATH says."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    run = subprocess.run([sys.executable, *arguments], capture_output=True, text=True, env=environment,
                         cwd=folder)
    elapsed = (time.perf_counter() - started) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if run.returncode != 0:
        raise SystemExit(f"{' '.join(arguments)} failed: {run.stderr.strip()}")
    cpu = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) * 1000
    return elapsed, cpu, run.stdout


def _database_ms(refresh_json: str) -> float:
    raw = json.loads(refresh_json)
    started, finished = (datetime.fromisoformat(raw[key]) for key in ("started_at", "finished_at"))
    return (finished - started).total_seconds() * 1000


MEASURES = ("python -c pass", "--version", "--help", "refresh (wall)", "refresh, database",
            "refresh, beyond the database", "CPU: python -c pass", "CPU: --version", "CPU: --help",
            "CPU: refresh")


def measure(url: str, sources: dict[str, str | None], repeats: int) -> dict[str, dict[str, list[float]]]:
    """For each version (label: checkout folder, None for this one), the samples of every measure."""
    environments = {label: _environment(source, url) for label, source in sources.items()}
    folders = {label: source or CHECKOUT for label, source in sources.items()}
    command = ["-m", "flywheel_sync"]
    for label, environment in environments.items():
        _timed([*command, "refresh", "--json"], environment, folders[label])  # warm: compiled files, the first (full) refresh
    samples = {label: {name: [] for name in MEASURES} for label in sources}
    for _ in range(repeats):  # interleaved, so a burst of load spreads over every row and version
        for label, environment in environments.items():
            taken = samples[label]
            for name, arguments in (("python -c pass", ["-c", "pass"]), ("--version", [*command, "--version"]),
                                    ("--help", [*command, "--help"])):
                wall, cpu, _ = _timed(arguments, environment, folders[label])
                taken[name].append(wall)
                taken[f"CPU: {name}"].append(cpu)
            wall, cpu, output = _timed([*command, "refresh", "--json"], environment, folders[label])
            database = _database_ms(output)
            taken["refresh (wall)"].append(wall)
            taken["refresh, database"].append(database)
            taken["refresh, beyond the database"].append(wall - database)
            taken["CPU: refresh"].append(cpu)
    return samples


def top_imports(url: str, source: str | None, count: int) -> list[tuple[str, float]]:
    """The top-level imports of one refresh with the most cumulative milliseconds."""
    run = subprocess.run([sys.executable, "-X", "importtime", "-m", "flywheel_sync", "refresh", "--json"],
                         capture_output=True, text=True, env=_environment(source, url), cwd=source or CHECKOUT)
    imports = []
    for line in run.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line.removeprefix("import time:").split("|")
        if not name.startswith("  "):  # one space after the bar: imported by the program, not by a module
            imports.append((name.strip(), int(cumulative) / 1000))
    return sorted(imports, key=lambda item: -item[1])[:count]


def render(samples: dict[str, dict[str, list[float]]], imports: dict[str, list[tuple[str, float]]]) -> str:
    labels = list(samples)
    header = f"{'median ms (min-max)':<30}" + "".join(f"{label:>22}" for label in labels)
    if len(labels) == 2:
        header += f"{labels[1] + '/' + labels[0]:>16}"
    lines = [header + f"{'target':>10}"]
    for name in MEASURES:
        cells = [samples[label][name] for label in labels]
        line = f"{name:<30}" + "".join(
            f"{f'{statistics.median(values):.0f} ({min(values):.0f}-{max(values):.0f})':>22}" for values in cells)
        if len(labels) == 2:
            line += f"{statistics.median(cells[1]) / statistics.median(cells[0]):>16.2f}"
        target = TARGETS_MS.get(name)
        lines.append(line + f"{f'<= {target}' if target else '':>10}")
    for label, top in imports.items():
        lines += ["", f"top-level imports of one `refresh`, {label} (python -X importtime, cumulative ms):"]
        lines += [f"  {name:<40} {ms:>8.1f}" for name, ms in top]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=["S", "M", "L"], default="S", help="data set the refresh runs on")
    parser.add_argument("--postgres", choices=dataset.POSTGRES_KINDS, default="embedded")
    parser.add_argument("--repeat", type=int, default=9, help="runs of each command (default 9)")
    parser.add_argument("--before", metavar="DIR", help="also run the flywheel_sync of another checkout")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    options = parser.parse_args()
    url = dataset.ensure(dataset.postgres_server(options.postgres), options.scale,
                         lambda message: print(message, file=sys.stderr))
    sources = {"before": options.before, "this": None} if options.before else {"this": None}
    samples = measure(url, sources, options.repeat)
    imports = {label: top_imports(url, source, 8) for label, source in sources.items()}
    load = os.getloadavg()
    if options.json:
        print(json.dumps({"samples_ms": samples, "top_imports_ms": imports, "load": load}, indent=2))
        return
    print(f"CLI start-up, scale {options.scale}, {options.repeat} runs each, load {load[0]:.1f} {load[1]:.1f} "
          f"{load[2]:.1f} on {os.cpu_count()} cores\n")
    print(render(samples, imports))


if __name__ == "__main__":
    main()
