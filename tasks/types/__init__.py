"""Built-in plugins: types."""
