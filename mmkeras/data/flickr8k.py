"""Flickr8k: 8,091 photos with five captions each, from the mirror the TensorFlow tutorial uses.

``python -m mmkeras data flickr8k --out DIR`` runs :func:`prepare`. The result is the
original release's layout, which :func:`mmkeras.data.folder.load_captions` reads as it is:
``Flicker8k_Dataset/`` (sic), ``Flickr8k.token.txt`` and ``Flickr_8k.{train,dev,test}Images.txt``.
Put Karpathy's ``dataset_flickr8k.json`` in the same folder to train and score on his split,
the one captioning papers report on.
"""

from __future__ import annotations

from pathlib import Path

from mmkeras.atomic import write_text
from mmkeras.data.download import Archive, fetch, unpack
from mmkeras.errors import UserError

MIRROR = "https://github.com/jbrownlee/Datasets/releases/download/Flickr8k"
# The MD5s published with this mirror's files (as other dataset libraries check them).
ARCHIVES = (
    Archive(f"{MIRROR}/Flickr8k_Dataset.zip", "f18a1e2920de5bd84dae7cf08ec78978"),
    Archive(f"{MIRROR}/Flickr8k_text.zip", "bf6c1abcb8e4a833b7f922104de18627"),
)
EXPECTED = ("Flicker8k_Dataset", "Flickr8k.token.txt", "Flickr_8k.trainImages.txt",
            "Flickr_8k.devImages.txt", "Flickr_8k.testImages.txt")


def prepare(out, archives: tuple[Archive, ...] | None = None, keep_archives: bool = False,
            progress: bool = True) -> Path:
    """Download, check and unpack Flickr8k into ``out``; a second call finds it done.

    Run again after an interruption, it resumes the download it was in. The archives
    (1.1 GB) are deleted once unpacked unless ``keep_archives``.
    """
    out = Path(out)
    downloads = out / "downloads"
    for archive in archives or ARCHIVES:
        done = out / f".unpacked-{archive.name}"
        if done.is_file() and done.read_text() == archive.md5:
            continue
        path = fetch(archive, downloads, progress=progress)
        print(f"unpacking {archive.name}")
        unpack(path, out)
        write_text(done, archive.md5)
        if not keep_archives:
            path.unlink()
    missing = [name for name in EXPECTED if not (out / name).exists()]
    if missing:
        raise UserError(f"{out}: the archives did not hold {', '.join(missing)}; expected the "
                        "Flickr8k release's files (is the mirror serving other files?)")
    if downloads.is_dir() and not any(downloads.iterdir()):
        downloads.rmdir()
    return out
