"""The `modelsync` command line (also `kubectl modelsync`)."""
