"""Fetch a dataset archive: resume a broken transfer, check its checksum, unpack it safely.

``keras.utils.get_file`` and the other downloaders of our stack check a hash but start a
broken transfer over from the first byte; a 1 GB archive on a Colab runtime that
disconnects deserves better. Used by :mod:`mmkeras.data.flickr8k`.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from mmkeras.errors import UserError

CHUNK = 1 << 20


@dataclass(frozen=True)
class Archive:
    """A file to fetch: where from, and the MD5 its publishers give for it."""

    url: str
    md5: str

    @property
    def name(self) -> str:
        return self.url.rsplit("/", 1)[-1]


def md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(archive: Archive, folder: Path, progress: bool = True, timeout: float = 60) -> Path:
    """``folder/archive.name``, downloaded if need be and checked against its MD5.

    Bytes arrive in ``NAME.part``; a later call continues that file with an HTTP range
    request (from a server that ignores ranges, it reads past the bytes it already has).
    Only a file whose checksum matches is renamed to ``NAME``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / archive.name
    if path.is_file() and md5_of(path) == archive.md5:
        return path
    partial = path.with_name(path.name + ".part")
    have = partial.stat().st_size if partial.is_file() else 0
    request = urllib.request.Request(archive.url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code != 416:  # 416: nothing after byte `have`, the part is whole already
            raise UserError(f"{archive.url}: could not download ({error})") from None
        return _checked(partial, path, archive)
    except OSError as error:  # URLError and timeouts are OSErrors too
        raise UserError(f"{archive.url}: could not download ({error}); check the internet "
                        f"connection and run the command again: it resumes from {partial.name}") from None
    with response:
        status = getattr(response, "status", None) or 200
        total = _content_length(response.headers)
        if have and status == 206:
            # A server may answer a range from another byte; appending that would corrupt
            # the part, which only the checksum would catch, after the whole download.
            if _range_start(response.headers) != have:
                raise UserError(f"{archive.url}: asked for the bytes from {have}, the server sent "
                                f"'Content-Range: {response.headers.get('Content-Range')}'; kept "
                                f"{partial.name}: run the command again, or delete it to start over")
            total = total + have if total is not None else None
            print(f"resuming {archive.name} at {have / 2**20:.1f} MB")
        elif have:  # the range was ignored: the body starts at byte 0
            print(f"resuming {archive.name} at {have / 2**20:.1f} MB (reading past what is here)")
            if not _skip(response, have):
                # Shorter than what is here: not the file (a public network's login page?).
                raise UserError(f"{archive.url}: the reply is shorter than the {have} bytes already "
                                f"downloaded, so it is not the file; kept {partial.name}: run the "
                                "command again once the connection is right, or delete it to start over")
        with open(partial, "ab") as out, tqdm(total=total, initial=have, unit="B", unit_scale=True,
                                              desc=archive.name, disable=None if progress else True) as bar:
            try:
                for block in iter(lambda: response.read(CHUNK), b""):
                    out.write(block)
                    bar.update(len(block))
                # http.client ends a body cut short as if it were complete; the length tells.
                broken = total is not None and out.tell() < total
            except (OSError, http.client.HTTPException):  # a dropped connection, a timeout
                broken = True
    if broken:
        raise UserError(f"{archive.url}: the download broke off at "
                        f"{partial.stat().st_size / 2**20:.1f} MB; run the command again: "
                        f"it resumes from {partial.name}")
    return _checked(partial, path, archive)


def _checked(partial: Path, path: Path, archive: Archive) -> Path:
    """Rename a whole download to its final name if its checksum matches; else delete it."""
    found = md5_of(partial)
    if found != archive.md5:
        partial.unlink()
        raise UserError(f"{archive.url}: checksum mismatch (MD5 {found}, expected {archive.md5}); "
                        "the damaged download was deleted, run the command again")
    os.replace(partial, path)
    return path


def _content_length(headers) -> int | None:
    """The reply's length in bytes, or None where it is missing or not a number."""
    value = (headers.get("Content-Length") or "").strip()
    return int(value) if value.isdigit() else None


def _range_start(headers) -> int | None:
    """The first byte of a 206 reply (``Content-Range: bytes FIRST-LAST/TOTAL``), or None."""
    match = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", (headers.get("Content-Range") or "").strip())
    return int(match.group(1)) if match else None


def _skip(response, count: int) -> bool:
    """Read past ``count`` bytes; False if the body ends first."""
    while count:
        block = response.read(min(CHUNK, count))
        if not block:
            return False
        count -= len(block)
    return True


def unpack(zip_path: Path, folder: Path, skip_prefixes: tuple[str, ...] = ("__MACOSX/",)) -> None:
    """Unpack ``zip_path`` into ``folder``; a member that would land outside it is refused."""
    root = folder.resolve()
    try:
        with zipfile.ZipFile(zip_path) as archive:
            members = [m for m in archive.infolist() if not m.filename.startswith(skip_prefixes)]
            # Every member checked before any is written: a refused archive leaves nothing.
            for member in members:
                if not (root / member.filename).resolve().is_relative_to(root):
                    raise UserError(f"{zip_path}: member {member.filename!r} would be written "
                                    f"outside {folder}; refusing to unpack this archive")
            for member in members:
                archive.extract(member, folder)
    except zipfile.BadZipFile as error:
        raise UserError(f"{zip_path}: not a readable zip archive ({error}); delete it and "
                        "run the command again") from None
