"""The ModelDeployment controller: a spec to a Ready model (runtimes, render, health,
rollout, canary, analysis) and its reconciler."""
