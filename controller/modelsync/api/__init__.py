"""The resources' vocabulary: condition types, reasons, labels and annotations, conditions,
and the CRDs' schemas. Imports nothing else of modelsync."""
