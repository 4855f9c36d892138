"""The ModelDeployment controller: a spec to a Ready model (runtimes, render, health,
rollout, canary, analysis, validation and its gate) and its reconciler."""
