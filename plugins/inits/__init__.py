"""Built-in plugins: inits."""
