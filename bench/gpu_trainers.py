"""The built-in torch trainer on a real GPU: trains there, and matches what it learns on the CPU.

Runs without Ray (the trainer runs inside a Tune trial in production; here it is called directly), so it works on a
machine that has torch and a GPU but no Ray. Prints one JSON line per result.

    python bench/gpu_trainers.py
"""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd


def data(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 16)).astype(np.float32)
    label = ((x[:, 0] + x[:, 1] * x[:, 2]) > 0).astype(int)
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(16)])
    return frame.assign(label=label)


def main() -> None:
    import torch

    from ray_deploy import trainers

    cuda = torch.cuda.is_available()
    print(json.dumps({"cuda": cuda, "device": torch.cuda.get_device_name(0) if cuda else "cpu only"}))
    module = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 2))
    train, valid = data(20_000, 0), data(4_000, 1)
    config = {"lr": 3e-3, "batch_size": 256, "epochs": 8, "seed": 0}
    for where in ("gpu", "cpu") if cuda else ("cpu",):
        trainers._trial_has_gpu = (lambda: True) if where == "gpu" else (lambda: False)  # type: ignore[assignment]
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        trainer = trainers.builtin_trainer(module, task="classification", predict_method="predict", input_kind="array")
        started = time.perf_counter()
        model, metrics = None, {}
        for step in trainer(config, train, valid):  # one (model, metrics) per epoch; the last is the result
            model, metrics = step
        seconds = time.perf_counter() - started
        held = trainers.score(model, data(4_000, 2), task="classification", input_kind="array")
        print(
            json.dumps(
                {
                    "trained_on": where,
                    "seconds": round(seconds, 2),
                    "peak_cuda_mb": round(torch.cuda.max_memory_allocated() / 2**20, 2) if cuda else 0.0,
                    "valid_accuracy": round(float(metrics["accuracy"]), 4),
                    "held_out_accuracy": round(float(held["accuracy"]), 4),
                    "model_on": str(next(model.parameters()).device),
                }
            )
        )


if __name__ == "__main__":
    main()
