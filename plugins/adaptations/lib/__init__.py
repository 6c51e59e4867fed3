"""Library modules: they register nothing; the plugins beside them import them."""
