"""Built-in plugins: adaptations."""
