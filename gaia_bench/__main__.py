"""`python -m gaia_bench` = `gaia-bench`."""

from gaia_bench.cli import main

main()
