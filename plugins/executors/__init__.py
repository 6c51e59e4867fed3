"""Built-in plugins: executors."""
