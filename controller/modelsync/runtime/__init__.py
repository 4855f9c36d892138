"""The process: settings, the kopf handlers (the only kopf import), the HTTP server,
probes, shards."""
