"""The six fusions compared on one task: the same examples, one classifier each.

Introduced in ``04_multimodal_tasks.ipynb``; ``python -m mmkeras fusion`` runs
:func:`compare_fusions`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mmkeras.atomic import write_json
from mmkeras.config import FUSIONS, TaskConfig
from mmkeras.tasks.classification import load_task_data, train_task


def compare_fusions(task: str = "vqa", fusions=FUSIONS, epochs: int = 6,
                    train_images: int | None = 2000, smoke: bool = False, seed: int = 0,
                    out: str = "runs/fusion", data: str = "shapes", verbose: int | str = 0,
                    progress: bool = True) -> list[dict]:
    """Train one classifier per fusion on the same examples; one row each (see :func:`fusion_table`).

    Writes each model into ``out/<fusion>/`` and the rows into ``out/fusion.json``.
    """
    base = TaskConfig(task=task, data=data, epochs=epochs, train_images=train_images,
                      smoke=smoke, seed=seed)
    _, examples = load_task_data(base, progress)  # the same examples for every fusion
    rows = []
    for fusion in fusions:
        config = dataclasses.replace(base, fusion=fusion, out=str(Path(out) / fusion))
        result = train_task(config, verbose=verbose, progress=progress, data=examples)
        rows.append({key: result[key] for key in
                     ("fusion", "accuracy", "chance", "parameters", "seconds_per_epoch")})
        if progress:
            print(f"{fusion:<10} test accuracy {result['accuracy']:.3f} (chance "
                  f"{result['chance']:.3f}), {result['seconds_per_epoch']:.1f} s per epoch", flush=True)
    write_json(Path(out) / "fusion.json", {"task": task, "epochs": epochs,
                                           "train_images": train_images, "rows": rows})
    return rows


def fusion_table(rows: list[dict]) -> str:
    """Markdown: one line per fusion, test accuracy beside chance, size and time per epoch."""
    lines = ["| fusion | test accuracy | chance | parameters | seconds per epoch |",
             "| --- | --- | --- | --- | --- |"]
    for row in rows:
        lines.append(f"| {row['fusion']} | {row['accuracy']:.3f} | {row['chance']:.3f} | "
                     f"{row['parameters']:,} | {row['seconds_per_epoch']:.1f} |")
    return "\n".join(lines)
