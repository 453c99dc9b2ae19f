from flywheel_sync.cli import cli

cli(prog_name="flywheel-sync")
