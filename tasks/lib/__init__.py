"""Library of the dataset plugins (registers nothing)."""
