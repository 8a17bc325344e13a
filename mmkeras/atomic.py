"""Writes that a kill never leaves half done: write beside the target, then rename.

``os.replace`` is atomic on one file system, so a reader (or a resumed run) finds either the
old file or the whole new one. Every file mmkeras writes that something later trusts goes
through here: run records, models, exported folders, feature caches, downloads.
"""

from __future__ import annotations

import collections
import csv
import io
import json
import os
import shutil
import signal
from pathlib import Path

# For the crash tests (tests/test_kill_points.py): "NAME" or "NAME#N" kills the process,
# as SIGKILL would, at the N-th write of a file or folder called NAME, at its worst moment
# (the new content complete beside it, not yet in its place). Unset, it costs nothing.
KILL_AT = "MMKERAS_KILL_AT"
_writes_seen: collections.Counter = collections.Counter()


def kill_point(name: str) -> None:
    """Die here if ``MMKERAS_KILL_AT`` names this write (see :data:`KILL_AT`)."""
    wanted = os.environ.get(KILL_AT)
    if not wanted:
        return
    target, _, nth = wanted.partition("#")
    if target == name:
        _writes_seen[name] += 1
        if _writes_seen[name] == int(nth or 1):
            # SIGKILL where there is one: no cleanup, no finally blocks, as a real kill.
            os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))


def partial_path(path: Path) -> Path:
    """Where ``path`` is written before it takes its name: ``NAME.partial``, beside it."""
    return path.with_name(path.name + ".partial")


def _fsync(path: Path) -> None:
    with open(path, "rb") as written:  # on disk before the rename makes it the real file
        os.fsync(written.fileno())


def write_bytes(path: Path, content: bytes) -> None:
    path = Path(path)
    partial = partial_path(path)
    partial.write_bytes(content)
    _fsync(partial)
    kill_point(path.name)
    os.replace(partial, path)


def write_text(path: Path, content: str) -> None:
    write_bytes(path, content.encode("utf-8"))


def write_csv(path: Path, rows: list[dict], fieldnames: list[str]) -> None:
    """``rows`` under a header of ``fieldnames``, written whole or not at all."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=fieldnames)
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, text.getvalue())


def write_json(path: Path, content: dict) -> None:
    write_text(path, json.dumps(content, indent=2) + "\n")


def save_model(model, path: Path) -> None:
    """``model.save``, atomically; the temporary name keeps ``.keras``, which Keras requires."""
    path = Path(path)
    partial = path.with_name(path.stem + ".partial" + path.suffix)
    model.save(partial)
    _fsync(partial)
    kill_point(path.name)
    os.replace(partial, path)


def replace_folder(partial: Path, folder: Path) -> None:
    """Give a folder written whole at ``partial`` the name ``folder``, replacing what was there.

    Between the two steps there is briefly no ``folder``; never half of one.
    """
    shutil.rmtree(folder, ignore_errors=True)
    kill_point(Path(folder).name)
    os.replace(partial, folder)
