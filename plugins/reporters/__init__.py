"""Built-in plugins: reporters."""
