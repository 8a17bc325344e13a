"""Picking up a training run that was killed: which stage it reached, and its callbacks' memory.

A run may be killed at any moment (a Colab disconnect, ``kill -9``, the out-of-memory
killer). ``run_state.json`` records its stage: ``"training"`` (resume from the backup
Keras' ``BackupAndRestore`` writes after every epoch), ``"trained"`` (``model.keras`` is
final; only the test scores are missing) or ``"finished"``. The callbacks that remember
the best epoch so far are given back that memory from ``history.csv`` and ``best.keras``,
so that a resumed run ends with the model an uninterrupted one would have.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
from pathlib import Path

import keras
import numpy as np

from mmkeras.atomic import kill_point, save_model, write_csv, write_json
from mmkeras.caption.validation import VAL_CAPTIONS
from mmkeras.config import TrainConfig
from mmkeras.errors import UserError
from mmkeras.runs import HISTORY, forget_history

RUN_STATE = "run_state.json"
BACKUP = "backup"
BACKUP_METADATA = "training_metadata.json"  # BackupAndRestore's own names
BACKUP_WEIGHTS = "latest.weights.h5"


def settings(config: TrainConfig) -> dict:
    """The settings that must match for a run to be resumed (the folder itself aside)."""
    return {k: v for k, v in dataclasses.asdict(config).items() if k != "out"}


def set_stage(out: Path, config: TrainConfig, stage: str) -> None:
    write_json(out / RUN_STATE, {"stage": stage, "settings": settings(config)})


def stage_to_resume(out: Path, config: TrainConfig) -> str | None:
    """``"training"`` or ``"trained"`` for an unfinished run of ``config`` in ``out``, else None.

    A run killed before it saved anything has nothing to resume: it starts afresh, whatever
    its settings. One that has is resumed only with the same settings. A finished run is
    never replaced by one with other settings (a typo in ``--data`` must not delete it); with
    the same settings, training again is what was asked for.
    """
    try:
        state = json.loads((out / RUN_STATE).read_text())
    except (FileNotFoundError, ValueError):
        return None
    if state.get("stage") == "trained" and (out / "model.keras").is_file():
        stage = "trained"
    elif state.get("stage") == "training" and backup_epochs(out) is not None:
        stage = "training"
    elif state.get("stage") == "finished" and (out / "model.keras").is_file():
        stage = "finished"
    else:
        return None
    # A setting added since the run was saved had, in that run, its default value.
    saved = {**settings(TrainConfig()), **state.get("settings", {})}
    if saved != settings(config):
        changed = sorted(k for k, v in settings(config).items() if saved.get(k) != v)
        if stage == "finished":
            raise UserError(f"{out} holds a finished run with other settings ({', '.join(changed)}); "
                            "choose another --out, or delete that folder to train there afresh")
        raise UserError(f"{out} holds an unfinished run with other settings ({', '.join(changed)}); "
                        "run again with the same settings to resume it, or choose another --out")
    return None if stage == "finished" else stage


def backup_epochs(out: Path) -> int | None:
    """Epochs finished in the backup, or None if there is no usable one.

    Keras falls back to the previous backup when the weights file is damaged, but not
    when its small metadata file is: a kill while that was written is handled here.
    """
    backup = out / BACKUP
    for suffix in ("", ".bkp"):
        try:
            epochs = int(json.loads((backup / (BACKUP_METADATA + suffix)).read_text())["epoch"])
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            continue
        if suffix:  # the current pair is damaged: make the previous one current again
            shutil.copy(backup / (BACKUP_WEIGHTS + suffix), backup / BACKUP_WEIGHTS)
            shutil.copy(backup / (BACKUP_METADATA + suffix), backup / BACKUP_METADATA)
        return epochs
    return None


def start_afresh(out: Path, config: TrainConfig) -> None:
    forget_history(out)
    (out / VAL_CAPTIONS).unlink(missing_ok=True)
    shutil.rmtree(out / BACKUP, ignore_errors=True)
    set_stage(out, config, "training")


def history_rows(history_csv: Path) -> list[dict]:
    """The whole rows of ``history.csv``: a row cut short by a kill is left out."""
    try:
        with open(history_csv, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except FileNotFoundError:
        return []
    # csv gives a short row None for its missing fields, a long one a None key.
    return [row for row in rows if None not in row and None not in row.values()
            and all(value != "" for value in row.values())]


def keep_history_of_backup(out: Path) -> list[float]:
    """Cut ``history.csv`` to the epochs in the backup; their validation losses.

    The history row of an epoch is written before its backup, so a kill between the two
    leaves one row more than the backup holds; that epoch runs again and writes it again.
    """
    history_csv = out / HISTORY
    rows = history_rows(history_csv)[: backup_epochs(out) or 0]
    if rows:
        write_csv(history_csv, rows, list(rows[0]))  # a kill here keeps the old history whole
    else:
        history_csv.unlink(missing_ok=True)
    return [float(row["val_loss"]) for row in rows]


class BestModelCheckpoint(keras.callbacks.Callback):
    """Saves the model whenever ``val_loss`` is the lowest so far, atomically.

    Keras' ``ModelCheckpoint`` writes ``best.keras`` in place: a kill during that write
    destroys the previous best, and the resumed run forgets it. ``best_so_far`` is the
    lowest validation loss of the epochs before an interruption.
    """

    def __init__(self, path: Path, best_so_far: float | None = None):
        super().__init__()
        self.path = Path(path)
        self.best = np.inf if best_so_far is None else best_so_far

    def on_epoch_end(self, epoch, logs=None):
        val_loss = (logs or {}).get("val_loss")
        if val_loss is not None and val_loss < self.best:
            self.best = val_loss
            save_model(self.model, self.path)


class ResumedEarlyStopping(keras.callbacks.EarlyStopping):
    """EarlyStopping that remembers the best epoch from before an interruption.

    ``val_losses`` are the epochs already run; ``best_model`` holds the weights of the
    best of them (:class:`BestModelCheckpoint`'s ``best.keras``).
    """

    def __init__(self, val_losses: list[float], best_model: Path, **kwargs):
        super().__init__(**kwargs)
        self.val_losses, self.best_model = list(val_losses), Path(best_model)

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if not self.val_losses:
            return
        try:
            best_weights = keras.saving.load_model(self.best_model, safe_mode=True).get_weights()
        except Exception:  # missing, or cut short by the kill: keep no memory rather than a wrong one
            print(f"warning: {self.best_model} could not be read; the best epoch is counted "
                  "from the resumed epochs only")
            return
        best = int(np.argmin(self.val_losses))
        self.best, self.best_epoch = self.val_losses[best], best
        self.wait = len(self.val_losses) - 1 - best
        if self.restore_best_weights:
            self.best_weights = best_weights


class _KillPoint(keras.callbacks.Callback):
    """A place between the callbacks' writes where the crash tests can kill a run."""

    def __init__(self, name: str):
        super().__init__()
        self.name = name

    def on_epoch_end(self, epoch, logs=None):
        kill_point(self.name)


def resume_callbacks(out: Path, patience: int, val_losses: list[float] = ()) -> list[keras.callbacks.Callback]:
    """The callbacks that let a killed run resume, and early stopping that survives it;
    ``val_losses`` of the epochs already run, when resuming.

    :func:`mmkeras.runs.fit` runs them after its history logger, so the history row of an
    epoch is written before its best model and its backup (see keep_history_of_backup).
    """
    best_so_far = min(val_losses) if val_losses else None
    return [
        _KillPoint(HISTORY),  # the epoch's history row is written, nothing else yet
        BestModelCheckpoint(out / "best.keras", best_so_far),
        # Resumes an interrupted run from its last finished epoch. double_checkpoint keeps the
        # previous backup too, so a kill in the middle of writing one falls back to the other;
        # train() deletes the backup itself, only once model.keras is safely written.
        keras.callbacks.BackupAndRestore(str(out / BACKUP), double_checkpoint=True,
                                         delete_checkpoint=False),
        _KillPoint(BACKUP),  # the epoch's backup is written
        ResumedEarlyStopping(val_losses, out / "best.keras", monitor="val_loss", patience=patience,
                             restore_best_weights=True),
    ]
