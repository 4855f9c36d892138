"""The `modelsync` command line (also `kubectl modelsync`): main.py holds the group and
the entry point, one module each command group (validate, status, control, commits,
run), common.py what they share."""
