"""The ModelSync controller: a git revision to applied objects (fetch, render, load,
validate, plan, apply, prune, status; webhooks, notifications, writeback, promotion,
remote clusters) and its reconciler, which reads the operator's settings only as
SyncSettings (settings.py)."""
