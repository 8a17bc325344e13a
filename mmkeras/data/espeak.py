"""English speech from eSpeak NG, through the engine and voices the ``espeakng-loader`` wheel
ships (Linux, macOS, Windows; no system install).

A thin ``ctypes`` binding of our own: the maintained Python packages around eSpeak NG either
phonemise only (phonemizer) or run an ``espeak-ng`` program that the wheel does not ship
(py-espeak-ng), and none returns the samples. Four calls of ``speak_lib.h`` do: initialise
for synchronous synthesis, set the voice, set rate and pitch, synthesise into a callback.
The engine is one global state per process, so a process speaks one clip at a time.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import tempfile
from functools import cache
from importlib.metadata import version
from pathlib import Path

import numpy as np

from mmkeras.errors import UserError

SAMPLE_RATE = 22050  # eSpeak NG's own, for every voice

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000  # report a missing or broken data folder; never exit(1)
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_RATE, _PITCH = 1, 3
# eSpeak NG keeps its data folder's path in a 160-byte buffer and exits the process when
# the path (plus a file name) does not fit: longer paths get a short copy.
_LONGEST_DATA_PATH = 100

_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                   ctypes.c_void_p)


@cache
def _engine() -> tuple[ctypes.CDLL, list[np.ndarray], object]:
    """The loaded library, the list each synthesis appends its samples to, and the callback
    (kept referenced: the library calls it for as long as the process lives)."""
    try:
        import espeakng_loader
    except ImportError as error:
        raise UserError("speech needs the espeakng-loader package: "
                        "python -m pip install espeakng-loader") from error
    data_path = Path(espeakng_loader.get_data_path())
    if len(str(data_path).encode()) > _LONGEST_DATA_PATH:
        data_path = _short_copy(data_path)
    library = ctypes.cdll.LoadLibrary(espeakng_loader.get_library_path())
    library.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    library.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    library.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    library.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
    library.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, str(data_path).encode(), _INITIALIZE_DONT_EXIT)
    if library.espeak_SetVoiceByName(b"en") != 0:
        raise UserError(f"{data_path}: eSpeak NG's voice data could not be read; reinstall it: "
                        "python -m pip install --force-reinstall espeakng-loader")
    chunks: list[np.ndarray] = []

    def collect(samples, count, events):
        if samples and count > 0:
            chunks.append(np.ctypeslib.as_array(samples, (count,)).copy())
        return 0  # go on

    callback = _SYNTH_CALLBACK(collect)
    library.espeak_SetSynthCallback(callback)
    return library, chunks, callback


def _short_copy(data_path: Path) -> Path:
    """The voice data under a short path, copied whole once per espeakng-loader release."""
    short = Path(tempfile.gettempdir()) / f"mmkeras-espeak-ng-data-{version('espeakng-loader')}"
    if not short.is_dir():
        partial = short.with_name(f"{short.name}.partial{os.getpid()}")
        shutil.copytree(data_path, partial)
        try:
            os.replace(partial, short)
        except OSError:  # another process got there first
            shutil.rmtree(partial, ignore_errors=True)
    return short


def synthesise(text: str, voice: str = "en-us", words_per_minute: int = 175, pitch: int = 50,
               seed: int = 0) -> np.ndarray:
    """``text`` spoken, as int16 samples at :data:`SAMPLE_RATE`.

    ``voice``: an eSpeak NG voice, optionally with a variant (``"en-gb-scotland+f3"``);
    ``words_per_minute``: 80..450; ``pitch``: 0..100 (50 is the voice's own); ``seed``: of
    the engine's random variation.
    """
    library, chunks, _ = _engine()
    if library.espeak_SetVoiceByName(voice.encode()) != 0:
        raise UserError(f"eSpeak NG has no voice {voice!r}")
    library.espeak_SetParameter(_RATE, int(words_per_minute), 0)
    library.espeak_SetParameter(_PITCH, int(pitch), 0)
    # The noise of the consonants is pseudo-random: seeded anew for each clip. (The voice's
    # pitch flutter still carries on from the clip before: the same clip comes out the same
    # only after the same clips, from a fresh process; see mmkeras.data.spoken.)
    library.espeak_ng_SetRandSeed(ctypes.c_long(seed))
    chunks.clear()
    encoded = text.encode() + b"\0"
    status = library.espeak_Synth(encoded, len(encoded), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
    if status != 0:
        raise UserError(f"eSpeak NG could not speak {text!r} (status {status})")
    return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
