"""The Kubernetes API as the controllers use it: client, throttle, cache, work queue,
drift, leader election."""
