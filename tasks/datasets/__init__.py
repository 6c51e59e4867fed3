"""Built-in plugins: datasets."""
