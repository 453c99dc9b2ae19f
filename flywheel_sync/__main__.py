from flywheel_sync.cli import main

main(prog_name="flywheel-sync")
