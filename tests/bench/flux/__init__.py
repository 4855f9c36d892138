"""Flux's source-controller and kustomize-controller, built from their Go modules and run
against the local cluster, to compare our sync figures with theirs."""
