import csv

import keras
import pytest

from mmkeras.training import train
from mmkeras.training_config import TrainConfig


class Interrupt(Exception):
    pass


class InterruptAfterFirstEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            raise Interrupt()


def _epochs(out):
    with open(out / "history.csv", newline="") as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


def test_an_interrupted_run_resumes_where_it_stopped(tmp_path, capsys):
    config = TrainConfig(smoke=True, decoder="init", out=str(tmp_path))
    with pytest.raises(Interrupt):
        train(config, verbose=0, progress=False, callbacks=[InterruptAfterFirstEpoch()])
    assert _epochs(tmp_path) == [0]
    assert (tmp_path / "backup").is_dir() and not (tmp_path / "model.keras").exists()

    result = train(config, verbose=0, progress=False)
    assert "resuming the interrupted run" in capsys.readouterr().out
    assert _epochs(tmp_path) == [0, 1], "the second run continues at epoch 1, not from scratch"
    assert not (tmp_path / "backup").exists(), "a finished run removes its backup"
    assert (tmp_path / "model.keras").is_file() and (tmp_path / "best.keras").is_file()
    assert result["run"]["epochs_run"] == 2


def test_a_fresh_run_in_a_used_folder_starts_a_new_history(tmp_path):
    config = TrainConfig(smoke=True, decoder="init", epochs=1, out=str(tmp_path))
    train(config, verbose=0, progress=False)
    train(config, verbose=0, progress=False)
    assert _epochs(tmp_path) == [0]
