"""Built-in plugins: adaptations / tsds."""
