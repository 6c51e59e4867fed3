"""Built-in task and dataset plugins (installed as ``gaia_bench.tasks``) and suite files."""
