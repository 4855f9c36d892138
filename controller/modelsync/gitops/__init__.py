"""The ModelSync controller: a git revision to applied objects (fetch, load, validate,
apply, prune, inventory, writeback, webhooks) and its reconciler."""
