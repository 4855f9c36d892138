"""The resources, typed, and their vocabulary: ModelSync and ModelDeployment as dataclasses
with the CRDs' defaults, JSON without Any (manifest.py), condition types, reasons, labels
and annotations, conditions, the CRDs' schemas, and how the platform writes its
allow-lists (origins, namespace patterns). Imports nothing else of modelsync."""
