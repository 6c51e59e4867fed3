"""Built-in plugins (installed as ``gaia_bench.plugins``): each module outside a ``lib/`` folder is
an ordinary plugin, found in this tree and registered through the same path as third-party ones,
in the order of its ``PLUGIN_ORDER`` (lower first). None imports torch at import time."""
