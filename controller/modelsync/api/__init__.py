"""The resources, typed, and their vocabulary: ModelSync and ModelDeployment as dataclasses
with the CRDs' defaults, JSON without Any (manifest.py), condition types, reasons, labels
and annotations, conditions, and the CRDs' schemas. Imports nothing else of modelsync."""
