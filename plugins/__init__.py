"""Built-in plugins (installed as ``gaia_bench.plugins``): each module is an ordinary plugin,
registered through the same path as third-party ones. None imports torch at import time."""
