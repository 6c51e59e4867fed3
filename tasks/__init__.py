"""Built-in task and dataset plugins (installed as ``gaia_bench.tasks``) and suite files; found and
ordered like those of ``gaia_bench.plugins``."""
