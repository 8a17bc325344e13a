"""The benchmarks run (at smoke size) and print what they promise; their figures are not tested."""

import os
import subprocess
import sys
from pathlib import Path

import tensorflow as tf

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


def test_train_throughput_prints_a_markdown_table_of_every_setting(tmp_path):
    out = tmp_path / "table.md"
    completed = subprocess.run(
        [sys.executable, str(BENCHMARKS / "train_throughput.py"), "--smoke", "--out", str(out)],
        capture_output=True, text=True, timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert completed.returncode == 0, completed.stderr[-3000:]
    table = out.read_text()
    assert table in completed.stdout
    assert "| setting | batch |" in table and "TensorFlow" in table
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == 9
    if not tf.config.list_physical_devices("GPU"):
        assert sum("not measured: no GPU" in row for row in rows) == 3
    measured = [row.split("|")[3].strip() for row in rows if "not measured" not in row]
    assert all(value.split()[0].isdigit() and int(value.split()[0]) > 0 for value in measured), measured


def test_generation_speed_prints_a_row_for_each_generator():
    completed = subprocess.run(
        [sys.executable, str(BENCHMARKS / "generation_speed.py"), "--smoke"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert completed.returncode == 0, completed.stderr[-3000:]
    rows = [line for line in completed.stdout.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [row.split("|")[1].split(",")[0].strip() for row in rows] == ["diffusion", "conditional VAE"]
    for row in rows:
        parameters, step_ms, _, images_per_second = (cell.strip() for cell in row.split("|")[2:6])
        assert int(parameters.replace(",", "")) > 0 and float(step_ms) > 0 and float(images_per_second) > 0, row
