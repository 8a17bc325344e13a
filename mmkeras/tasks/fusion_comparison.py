"""The eight fusions and the two blind baselines compared on one task: the same examples,
one classifier each.

Introduced in ``04_multimodal_tasks.ipynb``; ``python -m mmkeras fusion`` runs
:func:`compare_fusions`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from mmkeras.atomic import write_json
from mmkeras.config import FUSIONS, TaskConfig
from mmkeras.tasks.classification import load_task_data, train_task


def compare_fusions(task: str = "vqa", fusions=FUSIONS, epochs: int = 6,
                    train_images: int | None = 2000, smoke: bool = False, seed: int = 0,
                    out: str = "runs/fusion", data: str = "shapes", verbose: int | str = 0,
                    progress: bool = True, seeds: int = 1) -> list[dict]:
    """Train one classifier per fusion (``seeds`` of them, seed, seed + 1, ...) on the same
    examples; one row each, the mean and spread over the seeds (see :func:`fusion_table`).

    Writes each model into ``out/<fusion>/`` (``out/<fusion>/seed<k>/`` with several seeds)
    and the rows into ``out/fusion.json``.
    """
    base = TaskConfig(task=task, data=data, epochs=epochs, train_images=train_images,
                      smoke=smoke, seed=seed)
    _, examples = load_task_data(base, progress)  # the same examples for every fusion and seed
    rows = []
    for fusion in fusions:
        runs = []
        for k in range(seeds):
            folder = Path(out) / fusion if seeds == 1 else Path(out) / fusion / f"seed{seed + k}"
            config = dataclasses.replace(base, fusion=fusion, seed=seed + k, out=str(folder))
            runs.append(train_task(config, verbose=verbose, progress=progress, data=examples))
        accuracies = [run["accuracy"] for run in runs]
        rows.append({"fusion": fusion, "accuracy": float(np.mean(accuracies)),
                     "accuracy_sd": float(np.std(accuracies, ddof=1)) if seeds > 1 else 0.0,
                     "accuracies": accuracies, "chance": runs[0]["chance"],
                     # per question type (or changed word), as in metrics.json: the accuracy
                     # the mean over the seeds; the chance and n the same for every seed
                     "by_kind": {kind: {**score, "accuracy": float(np.mean(
                         [run["by_kind"][kind]["accuracy"] for run in runs]))}
                         for kind, score in runs[0]["by_kind"].items()},
                     "parameters": runs[0]["parameters"],
                     "seconds_per_epoch": float(np.mean([run["seconds_per_epoch"] for run in runs]))})
        if progress:
            print(f"{fusion:<14} test accuracy {rows[-1]['accuracy']:.3f} (chance "
                  f"{rows[-1]['chance']:.3f}), {rows[-1]['seconds_per_epoch']:.1f} s per epoch", flush=True)
    write_json(Path(out) / "fusion.json", {"task": task, "epochs": epochs, "seeds": seeds,
                                           "train_images": train_images, "rows": rows})
    return rows


def fusion_table(rows: list[dict]) -> str:
    """Markdown: one line per fusion, test accuracy (mean and standard deviation over the
    seeds) beside chance, size and time per epoch."""
    lines = ["| fusion | test accuracy | chance | parameters | seconds per epoch |",
             "| --- | --- | --- | --- | --- |"]
    for row in rows:
        spread = f" ± {row['accuracy_sd']:.3f}" if len(row.get("accuracies", ())) > 1 else ""
        lines.append(f"| {row['fusion']} | {row['accuracy']:.3f}{spread} | {row['chance']:.3f} | "
                     f"{row['parameters']:,} | {row['seconds_per_epoch']:.1f} |")
    return "\n".join(lines)
