"""modelsync: GitOps for machine-learning model serving on Kubernetes."""

__version__ = "0.1.0"
