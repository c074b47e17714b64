"""The main job behind `make demo`.

    python -m training.demo

Prints the model summary and the ONNX latency table (benchmarks/latency.py).
"""

from __future__ import annotations

import runpy
from pathlib import Path

from training.models import VARIANTS, build_model, count_parameters


def main() -> None:
    for name in VARIANTS:
        print(f"{name:6s} {count_parameters(build_model(name)):6d} params  {VARIANTS[name]}")
    runpy.run_path(str(Path(__file__).resolve().parents[1] / "benchmarks" / "latency.py"), run_name="__main__")


if __name__ == "__main__":
    main()
