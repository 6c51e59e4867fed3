"""Built-in plugins: adaptations / vqgan."""
