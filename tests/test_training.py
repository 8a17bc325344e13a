import csv
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from filelock import FileLock
from test_cli import run_cli

from mmkeras.caption import train as caption_train
from mmkeras.caption.resume import (
    BestModelCheckpoint,
    ResumedEarlyStopping,
    backup_epochs,
    history_rows,
    keep_history_of_backup,
    resume_callbacks,
    set_stage,
    stage_to_resume,
)
from mmkeras.caption.train import train
from mmkeras.config import RetrievalConfig, TaskConfig, TrainConfig
from mmkeras.data import shapes
from mmkeras.errors import UserError
from mmkeras.runs import save_model as save_atomically
from mmkeras.tasks.classification import train_task
from mmkeras.tasks.retrieval import train_retrieval


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


def test_a_run_with_other_settings_does_not_resume_an_unfinished_one(tmp_path):
    config = TrainConfig(smoke=True, decoder="init", out=str(tmp_path))
    with pytest.raises(Interrupt):
        train(config, verbose=0, progress=False, callbacks=[InterruptAfterFirstEpoch()])
    other = TrainConfig(smoke=True, decoder="attention", out=str(tmp_path))
    with pytest.raises(UserError, match=r"unfinished run with other settings \(decoder\)"):
        train(other, verbose=0, progress=False)
    assert (tmp_path / "backup").is_dir(), "the refused run leaves the unfinished one intact"


def _finished_run(out):
    """What a finished run leaves (its files stand in: only their survival is checked)."""
    config = TrainConfig(smoke=True, decoder="init", out=str(out))
    for name in ("model.keras", "history.csv", "metrics.json"):
        (out / name).write_text(f"the finished run's {name}")
    set_stage(out, config, "finished")
    return config


def _finished_files(out):
    return {name: (out / name).read_text() for name in ("model.keras", "history.csv", "metrics.json")}


def test_a_typo_in_the_data_never_deletes_a_finished_run(tmp_path):
    config = _finished_run(tmp_path)
    before = _finished_files(tmp_path)
    with pytest.raises(UserError, match="finished run with other settings"):
        train(dataclasses.replace(config, data=str(tmp_path / "typo")), verbose=0, progress=False)
    assert _finished_files(tmp_path) == before


def test_a_typo_fails_before_anything_in_out_is_touched(tmp_path):
    # Not over a finished run: the data and the backbone are checked before the history goes.
    config = TrainConfig(smoke=True, decoder="init", out=str(tmp_path))
    (tmp_path / "history.csv").write_text("epoch,loss,val_loss\n0,0.9,0.8\n")
    for typo in ({"data": str(tmp_path / "typo")}, {"backbone": "Foo"}):
        with pytest.raises(UserError):
            train(dataclasses.replace(config, **typo), verbose=0, progress=False)
        assert (tmp_path / "history.csv").read_text() == "epoch,loss,val_loss\n0,0.9,0.8\n"


def test_a_finished_run_is_replaced_only_by_one_with_its_settings(tmp_path):
    config = _finished_run(tmp_path)
    other = TrainConfig(smoke=True, decoder="attention", out=str(tmp_path))
    with pytest.raises(UserError, match=r"finished run with other settings \(decoder\)"):
        stage_to_resume(tmp_path, other)
    assert stage_to_resume(tmp_path, config) is None, "the same settings: train afresh, as asked"


def test_a_run_saved_before_a_setting_existed_had_its_default(tmp_path):
    config = _finished_run(tmp_path)
    state = json.loads((tmp_path / "run_state.json").read_text())
    del state["settings"]["val_bleu_images"], state["settings"]["encoder"]  # added later
    (tmp_path / "run_state.json").write_text(json.dumps(state))
    assert stage_to_resume(tmp_path, config) is None, "the same settings, as they were then"
    with pytest.raises(UserError, match=r"other settings \(encoder\)"):
        stage_to_resume(tmp_path, dataclasses.replace(config, encoder="vit"))


def _caption_run(data, out):
    return train(TrainConfig(data=str(data), smoke=True, decoder="init", out=str(out)),
                 verbose=0, progress=False)


def _task_run(task):
    def run(data, out):
        return train_task(TaskConfig(task=task, data=str(data), smoke=True, out=str(out)),
                          verbose=0, progress=False)
    return run


def _retrieval_run(data, out):
    return train_retrieval(RetrievalConfig(data=str(data), smoke=True, out=str(out)),
                           verbose=0, progress=False)


@pytest.mark.parametrize("run", [_caption_run, _task_run("vqa"), _task_run("match"), _retrieval_run],
                         ids=["train", "vqa", "match", "retrieval"])
def test_a_second_run_into_the_same_folder_is_refused(run, small_shapes, tmp_path):
    (tmp_path / "history.csv").write_text("epoch,loss\n0,1.0\n")  # the running one's record
    running = FileLock(tmp_path / ".lock")  # held as a run in another process holds it
    running.acquire()
    try:
        with pytest.raises(UserError, match="another run is writing into this folder"):
            run(small_shapes, tmp_path)
    finally:
        running.release()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "history.csv"], "it wrote nothing"
    assert (tmp_path / "history.csv").read_text() == "epoch,loss\n0,1.0\n"


def test_the_best_model_is_saved_atomically(tmp_path, caption_model, monkeypatch):
    checkpoint = BestModelCheckpoint(tmp_path / "best.keras", best_so_far=0.5)
    checkpoint.set_model(caption_model)
    checkpoint.on_epoch_end(0, {"val_loss": 0.6})
    assert not (tmp_path / "best.keras").exists(), "not better than before the interruption"
    checkpoint.on_epoch_end(1, {"val_loss": 0.4})
    best = (tmp_path / "best.keras").read_bytes()

    def half_a_save(self, filepath, *args, **kwargs):  # killed in the middle of the write
        with open(filepath, "wb") as handle:
            handle.write(best[: len(best) // 2])
        raise Interrupt()

    monkeypatch.setattr(keras.Model, "save", half_a_save)
    with pytest.raises(Interrupt):
        checkpoint.on_epoch_end(2, {"val_loss": 0.3})
    assert (tmp_path / "best.keras").read_bytes() == best
    callbacks = resume_callbacks(tmp_path, patience=2)
    assert not any(isinstance(c, keras.callbacks.ModelCheckpoint) for c in callbacks), \
        "Keras' ModelCheckpoint writes best.keras in place"


def test_the_backup_keeps_the_previous_epoch_beside_the_latest(tmp_path):
    """So that a kill in the middle of writing one falls back to the other (the test above)."""
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    x, y = np.ones((8, 2), "float32"), np.ones((8, 1), "float32")
    model.fit(x, y, validation_data=(x, y), epochs=2, verbose=0,
              callbacks=resume_callbacks(tmp_path, patience=5))
    backup = tmp_path / "backup"
    assert (backup / "latest.weights.h5.bkp").is_file() and (backup / "training_metadata.json.bkp").is_file()
    assert backup_epochs(tmp_path) == 2


def test_a_history_row_cut_short_is_left_out(tmp_path):
    (tmp_path / "history.csv").write_text("epoch,loss,val_loss\n0,0.9,0.8\n1,0.7\n")
    assert [row["epoch"] for row in history_rows(tmp_path / "history.csv")] == ["0"]


def test_cutting_the_history_is_atomic(tmp_path, monkeypatch):
    (tmp_path / "backup").mkdir()
    (tmp_path / "backup" / "training_metadata.json").write_text('{"epoch": 1, "batch": 0}')
    history = "epoch,loss,val_loss\n0,0.9,0.8\n1,0.7,0.6\n"
    (tmp_path / "history.csv").write_text(history)

    def killed_before_the_rename(*args):
        raise Interrupt()

    monkeypatch.setattr(os, "replace", killed_before_the_rename)
    with pytest.raises(Interrupt):
        keep_history_of_backup(tmp_path)
    assert (tmp_path / "history.csv").read_text() == history


def test_a_run_killed_after_training_only_scores_the_saved_model(tmp_path, capsys, monkeypatch):
    config = TrainConfig(smoke=True, decoder="init", out=str(tmp_path))
    monkeypatch.setattr(caption_train, "split_metrics", _killed)
    with pytest.raises(Interrupt):
        train(config, verbose=0, progress=False)
    saved = (tmp_path / "model.keras").stat().st_mtime_ns
    monkeypatch.undo()

    result = train(config, verbose=0, progress=False)
    assert "training had finished; scoring model.keras" in capsys.readouterr().out
    assert (tmp_path / "model.keras").stat().st_mtime_ns == saved, "not trained again"
    assert _epochs(tmp_path) == [0, 1] and result["metrics"]["n_images"] == 64


def _killed(*args, **kwargs):
    raise Interrupt()


def test_saving_that_fails_half_way_leaves_the_previous_model(tmp_path, caption_model, monkeypatch):
    path = tmp_path / "model.keras"
    save_atomically(caption_model, path)
    good = path.read_bytes()

    def half_a_save(self, filepath, *args, **kwargs):
        with open(filepath, "wb") as handle:
            handle.write(good[: len(good) // 2])
        raise Interrupt()

    monkeypatch.setattr(keras.Model, "save", half_a_save)
    with pytest.raises(Interrupt):
        save_atomically(caption_model, path)
    assert path.read_bytes() == good


@pytest.fixture(scope="module")
def kill_test_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("kill_test_data")
    return shapes.generate(folder, shapes.ShapesConfig(num_train=320, num_val=32, num_test=32),
                           progress=False)


def _train_args(data, out):
    return ["train", "--data", data, "--decoder", "init", "--epochs", 3, "--batch-size", 8,
            "--out", out]


def test_a_run_killed_mid_epoch_resumes_from_its_backup(kill_test_data, tmp_path):
    """SIGKILL, the way a Colab disconnect or the out-of-memory killer ends a run."""
    out = tmp_path / "run"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, "-m", "mmkeras", *map(str, _train_args(kill_test_data, out))]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 300
    # Wait for the first epoch's backup, then kill at once: inside the second epoch (an epoch
    # of 40 batches takes seconds on a CPU).
    while backup_epochs(out) != 1:
        assert first.poll() is None, first.stdout.read().decode()[-3000:]
        assert time.monotonic() < deadline, "the first epoch never finished"
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert first.returncode == -signal.SIGKILL
    assert _epochs(out) == [0], "killed before the second epoch ended"
    assert not (out / "model.keras").exists()

    second = run_cli(*_train_args(kill_test_data, out))
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resuming the interrupted run" in second.stdout
    assert "Epoch 1/3" not in second.stdout and "Epoch 2/3" in second.stdout, second.stdout
    assert _epochs(out) == [0, 1, 2]
    assert not (out / "backup").exists()
    assert json.loads((out / "metrics.json").read_text())["n_images"] == 32
    keras.saving.load_model(out / "model.keras", safe_mode=True)


def test_a_run_killed_before_saving_anything_does_not_hold_the_folder(tmp_path):
    set_stage(tmp_path, TrainConfig(decoder="init", out=str(tmp_path)), "training")  # then killed
    other = TrainConfig(smoke=True, decoder="attention", epochs=1, out=str(tmp_path))
    assert stage_to_resume(tmp_path, other) is None, "nothing to resume: start afresh"


def test_a_backup_cut_short_falls_back_to_the_previous_one(tmp_path):
    backup = tmp_path / "backup"
    backup.mkdir()
    (backup / "training_metadata.json").write_text('{"epoch": 4, "ba')  # killed mid-write
    (backup / "latest.weights.h5").write_bytes(b"new")
    (backup / "training_metadata.json.bkp").write_text('{"epoch": 3, "batch": 0}')
    (backup / "latest.weights.h5.bkp").write_bytes(b"old")
    assert backup_epochs(tmp_path) == 3
    assert (backup / "latest.weights.h5").read_bytes() == b"old"
    assert json.loads((backup / "training_metadata.json").read_text())["epoch"] == 3


def test_history_is_cut_to_the_epochs_in_the_backup(tmp_path):
    (tmp_path / "backup").mkdir()
    (tmp_path / "backup" / "training_metadata.json").write_text('{"epoch": 2, "batch": 0}')
    rows = "".join(f"{e},0.{9 - e},0.{8 - e}\n" for e in range(3))
    (tmp_path / "history.csv").write_text("epoch,loss,val_loss\n" + rows)
    assert keep_history_of_backup(tmp_path) == [0.8, 0.7]
    assert _epochs(tmp_path) == [0, 1], "epoch 2 was written but not backed up: it runs again"


def test_early_stopping_remembers_the_best_epoch_before_the_interruption(tmp_path, caption_model):
    caption_model.save(tmp_path / "best.keras")
    callback = ResumedEarlyStopping([0.5, 0.3, 0.4], tmp_path / "best.keras", monitor="val_loss",
                                    patience=4, restore_best_weights=True)
    callback.on_train_begin()
    assert (callback.best, callback.best_epoch, callback.wait) == (0.3, 1, 1)
    for kept, saved in zip(callback.best_weights, caption_model.get_weights()):
        np.testing.assert_array_equal(kept, saved)


def test_an_unreadable_best_model_leaves_early_stopping_without_memory(tmp_path, capsys):
    (tmp_path / "best.keras").write_bytes(b"cut short by the kill")
    callback = ResumedEarlyStopping([0.5, 0.3], tmp_path / "best.keras", monitor="val_loss",
                                    restore_best_weights=True)
    callback.on_train_begin()
    assert callback.best is None and callback.best_weights is None
    assert "best.keras could not be read" in capsys.readouterr().out


def test_every_epoch_scores_the_captions_of_that_epochs_model_into_the_history(tmp_path):
    from mmkeras.caption.decoding import CaptionDecoder
    from mmkeras.caption.metrics import caption_metrics
    from mmkeras.data.catalog import load_dataset
    from mmkeras.data.images import images_in_memory

    config = TrainConfig(smoke=True, decoder="attention", out=str(tmp_path), val_bleu_images=16)
    _, splits = load_dataset("shapes", smoke=True, progress=False)
    images, references = images_in_memory(splits["val"], 64)[:16], splits["val"].captions[:16]
    expected = []

    class ScoreAgain(keras.callbacks.Callback):  # runs after the scorer, on the same weights
        def on_epoch_end(self, epoch, logs=None):
            captions = CaptionDecoder(self.model).captions(images)
            expected.append((caption_metrics(references, captions)["bleu_4"], captions[:4]))

    train(config, verbose=0, progress=False, callbacks=[ScoreAgain()])
    with open(tmp_path / "history.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [float(row["val_bleu_4"]) for row in rows] == pytest.approx([b for b, _ in expected])
    assert all(float(row["epoch_seconds"]) > 0 and float(row["val_bleu_seconds"]) > 0 for row in rows)
    with open(tmp_path / "val_captions.csv", newline="") as handle:
        shown = [(int(row["epoch"]), row["caption"]) for row in csv.DictReader(handle)]
    assert shown == [(epoch, c) for epoch, (_, captions) in enumerate(expected) for c in captions]
