"""Same seed, same machine: two training runs give identical metrics (issue: trust)."""

import csv
import json

import pytest
from test_cli import run_cli


def _train(out, seed):
    completed = run_cli("train", "--smoke", "--decoder", "init", "--seed", seed, "--out", out)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def seed_3_run(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("seed_3") / "run", 3)


def _record(out):
    """Metrics, history and per-epoch captions: everything but the times taken."""
    record = json.loads((out / "metrics.json").read_text())
    with open(out / "history.csv", newline="") as handle:
        record["history"] = [{k: v for k, v in row.items() if not k.endswith("_seconds")}
                             for row in csv.DictReader(handle)]
    record["val_captions"] = (out / "val_captions.csv").read_text()
    return record


def test_two_smoke_runs_with_the_same_seed_give_identical_metrics(seed_3_run, tmp_path):
    assert _record(seed_3_run) == _record(_train(tmp_path / "again", 3))
    config = json.loads((seed_3_run / "config.json").read_text())
    assert config["config"]["seed"] == 3
    assert {"tensorflow", "keras", "numpy", "python"} <= set(config["versions"])


def test_another_seed_gives_another_run(seed_3_run, tmp_path):
    other = _train(tmp_path / "seed_4", 4)
    assert (seed_3_run / "history.csv").read_text() != (other / "history.csv").read_text(), \
        "the seed reaches the data and the weights"
