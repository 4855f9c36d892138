"""What every layer tells the operator's users: Prometheus metrics and structured logs."""
