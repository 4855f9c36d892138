"""The Kubernetes API as the controllers use it: client, remote clusters, throttle, cache,
work queue, drift, leader election."""
