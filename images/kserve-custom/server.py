"""A custom model server written with the `kserve` package: serves the scikit-learn
model saved with joblib in MODEL_DIR (one *.joblib file) under the V1 protocol.

The image of modelsync's `custom` runtime in the tests: a ModelDeployment names it
in `runtime.image`, with `runtime.port` 8080 and `runtime.readinessPath`
`/v1/models/{model}` (200 once the model is loaded and ready). The model's name is
the first argument, --model_name (or $MODEL_NAME).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import joblib
import kserve

MODEL_DIR = "/mnt/models"


class JoblibModel(kserve.Model):  # type: ignore[misc]
    def __init__(self, name: str, model_dir: str) -> None:
        super().__init__(name)
        self.model_dir = Path(model_dir)
        self.estimator: Any = None

    def load(self) -> bool:
        found = sorted(self.model_dir.glob("*.joblib"))
        if len(found) != 1:
            raise RuntimeError(
                f"{self.model_dir} holds {len(found)} *.joblib files; put exactly one there"
            )
        self.estimator = joblib.load(found[0])
        self.ready = True
        return self.ready

    def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        """The V1 protocol: {"instances": [[...], ...]} -> {"predictions": [...]}."""
        if not isinstance(payload, dict) or "instances" not in payload:
            raise kserve.errors.InvalidInput('send {"instances": [[feature, ...], ...]}')
        return {"predictions": self.estimator.predict(payload["instances"]).tolist()}


def main() -> None:
    parser = argparse.ArgumentParser(parents=[kserve.model_server.parser])
    parser.add_argument("--model_dir", default=os.environ.get("MODEL_DIR", MODEL_DIR))
    args, _ = parser.parse_known_args()
    name = args.model_name if args.model_name != "model" else os.environ.get("MODEL_NAME", "model")
    model = JoblibModel(name, args.model_dir)
    model.load()
    kserve.ModelServer().start([model])


if __name__ == "__main__":
    main()
