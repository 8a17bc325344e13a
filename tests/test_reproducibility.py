"""Same seed, same machine: two training runs give identical metrics (issue: trust)."""

import csv
import json

from test_cli import run_cli


def test_two_smoke_runs_with_the_same_seed_give_identical_metrics(tmp_path):
    metrics = []
    for name in ("first", "second"):
        completed = run_cli("train", "--smoke", "--decoder", "init", "--seed", 3, "--out", tmp_path / name)
        assert completed.returncode == 0, completed.stderr[-3000:]
        metrics.append(json.loads((tmp_path / name / "metrics.json").read_text()))
        with open(tmp_path / name / "history.csv", newline="") as handle:
            # Everything but the times taken.
            metrics[-1]["history"] = [{k: v for k, v in row.items() if not k.endswith("_seconds")}
                                      for row in csv.DictReader(handle)]
        metrics[-1]["val_captions"] = (tmp_path / name / "val_captions.csv").read_text()
    assert metrics[0] == metrics[1]
    config = json.loads((tmp_path / "first" / "config.json").read_text())
    assert config["config"]["seed"] == 3
    assert {"tensorflow", "keras", "numpy", "python"} <= set(config["versions"])


def test_another_seed_gives_another_run(tmp_path):
    runs = []
    for seed in (3, 4):
        out = tmp_path / f"seed{seed}"
        completed = run_cli("train", "--smoke", "--decoder", "init", "--seed", seed, "--out", out)
        assert completed.returncode == 0, completed.stderr[-3000:]
        runs.append((out / "history.csv").read_text())
    assert runs[0] != runs[1], "the seed reaches the data and the weights"
