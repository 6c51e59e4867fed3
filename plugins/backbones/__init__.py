"""Built-in plugins: backbones."""
