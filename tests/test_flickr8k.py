"""Flickr8k's download, checked and resumed, against mirrors the tests make (no internet)."""

import hashlib
import http.server
import io
import json
import threading
import zipfile

import pytest
from PIL import Image
from test_cli import run_cli

from mmkeras.data import flickr8k
from mmkeras.data.download import Archive, fetch, unpack
from mmkeras.data.folder import KARPATHY_SPLIT, load_captions
from mmkeras.errors import UserError

NAMES = [f"{1000 + i}_photo.jpg" for i in range(12)]
SPLITS = {"train": NAMES[:8], "dev": NAMES[8:10], "test": NAMES[10:]}


def _jpeg(index):
    buffer = io.BytesIO()
    Image.new("RGB", (96, 64), (20 * index, 100, 200 - 10 * index)).save(buffer, "JPEG")
    return buffer.getvalue()


def _zip(path, members):
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return path


def _md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    """Zips laid out as the real ones are, in a folder served as a file:// mirror."""
    folder = tmp_path_factory.mktemp("mirror")
    images = {f"Flicker8k_Dataset/{name}": _jpeg(i) for i, name in enumerate(NAMES)}
    images["__MACOSX/Flicker8k_Dataset/._1000_photo.jpg"] = b"resource fork junk"
    tokens = "\n".join(f"{name}#{k}\tA photo number {i} , caption {k} ." for i, name in enumerate(NAMES)
                       for k in range(5))
    text = {"Flickr8k.token.txt": tokens, "readme.txt": "Flickr8k"}
    for split, names in SPLITS.items():
        text[f"Flickr_8k.{split}Images.txt"] = "\n".join(names) + "\n"
    archives = []
    for name, members in (("Flickr8k_Dataset.zip", images), ("Flickr8k_text.zip", text)):
        path = _zip(folder / name, members)
        archives.append(Archive(path.as_uri(), _md5(path)))
    return folder, tuple(archives)


def test_prepare_downloads_checks_and_unpacks_into_the_loaders_layout(mirror, tmp_path):
    _, archives = mirror
    out = flickr8k.prepare(tmp_path / "flickr8k", archives, progress=False)
    splits = load_captions(out)
    assert [len(splits[s]) for s in ("train", "val", "test")] == [8, 2, 2]
    assert splits["test"].captions[0][0] == "A photo number 10 , caption 0 ."
    assert not (out / "__MACOSX").exists(), "macOS resource forks are left out"
    assert not (out / "downloads").exists(), "archives deleted once unpacked"


def test_prepare_a_second_time_downloads_nothing(mirror, tmp_path):
    _, archives = mirror
    flickr8k.prepare(tmp_path, archives, progress=False)
    nowhere = tuple(Archive(f"file://{tmp_path}/gone/{a.name}", a.md5) for a in archives)
    assert flickr8k.prepare(tmp_path, nowhere, progress=False) == tmp_path


def test_checksum_mismatch_is_an_error_and_deletes_the_bad_file(mirror, tmp_path):
    _, archives = mirror
    wrong = Archive(archives[1].url, "0" * 32)
    with pytest.raises(UserError, match=r"Flickr8k_text.zip: checksum mismatch \(MD5 [0-9a-f]{32}, "
                                        r"expected 0{32}\)"):
        fetch(wrong, tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_a_partial_file_is_continued_from_a_file_mirror(mirror, tmp_path, capsys):
    folder, archives = mirror
    whole = (folder / "Flickr8k_Dataset.zip").read_bytes()
    (tmp_path / "Flickr8k_Dataset.zip.part").write_bytes(whole[: len(whole) // 2])
    path = fetch(archives[0], tmp_path, progress=False)
    assert "resuming Flickr8k_Dataset.zip at" in capsys.readouterr().out
    assert path.read_bytes() == whole and not (tmp_path / "Flickr8k_Dataset.zip.part").exists()


class _FlakyRangeServer(http.server.BaseHTTPRequestHandler):
    """Serves one file with HTTP ranges; the first request breaks off half way."""

    body = b""
    requests: list = []

    def do_GET(self):
        start = 0
        if self.headers.get("Range"):
            start = int(self.headers["Range"].removeprefix("bytes=").rstrip("-"))
        self.requests.append(start)
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(self.body) - start))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(self.body) - 1}/{len(self.body)}")
        self.end_headers()
        if len(self.requests) == 1:  # the connection drops mid-transfer
            self.wfile.write(self.body[: len(self.body) // 3])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(self.body[start:])

    def log_message(self, *args):
        pass


def test_a_broken_http_transfer_resumes_with_a_range_request(mirror, tmp_path, capsys):
    folder, archives = mirror
    _FlakyRangeServer.body = (folder / "Flickr8k_Dataset.zip").read_bytes()
    _FlakyRangeServer.requests = []
    server = http.server.HTTPServer(("127.0.0.1", 0), _FlakyRangeServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        archive = Archive(f"http://127.0.0.1:{server.server_port}/Flickr8k_Dataset.zip", archives[0].md5)
        with pytest.raises(UserError, match="download broke off at .* it resumes from "
                                            "Flickr8k_Dataset.zip.part"):
            fetch(archive, tmp_path, progress=False, timeout=5)
        kept = (tmp_path / "Flickr8k_Dataset.zip.part").stat().st_size
        assert kept == len(_FlakyRangeServer.body) // 3
        path = fetch(archive, tmp_path, progress=False, timeout=5)
    finally:
        server.shutdown()
    assert _FlakyRangeServer.requests == [0, kept], "the second request asks only for the rest"
    assert "resuming Flickr8k_Dataset.zip at" in capsys.readouterr().out
    assert _md5(path) == archives[0].md5


class _ScriptedServer(http.server.BaseHTTPRequestHandler):
    """Answers every request with the status, headers and body a test sets."""

    status, headers_to_send, body = 200, {}, b""

    def do_GET(self):
        self.send_response(self.status)
        for name, value in self.headers_to_send.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.fixture
def scripted_server():
    server = http.server.HTTPServer(("127.0.0.1", 0), _ScriptedServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def _answer(status, headers, body):
    _ScriptedServer.status, _ScriptedServer.headers_to_send, _ScriptedServer.body = status, headers, body


def test_a_short_page_in_place_of_the_file_keeps_the_part(mirror, scripted_server, tmp_path):
    folder, archives = mirror
    whole = (folder / "Flickr8k_Dataset.zip").read_bytes()
    part = whole[: len(whole) // 2]
    (tmp_path / "Flickr8k_Dataset.zip.part").write_bytes(part)
    portal = b"<html>Sign in to the cafe's network</html>"
    _answer(200, {"Content-Length": str(len(portal))}, portal)
    archive = Archive(f"{scripted_server}/Flickr8k_Dataset.zip", archives[0].md5)
    with pytest.raises(UserError, match="shorter than the .* bytes already downloaded.*kept "
                                        "Flickr8k_Dataset.zip.part"):
        fetch(archive, tmp_path, progress=False, timeout=5)
    assert (tmp_path / "Flickr8k_Dataset.zip.part").read_bytes() == part


def test_a_range_answered_from_another_byte_is_refused(mirror, scripted_server, tmp_path):
    folder, archives = mirror
    whole = (folder / "Flickr8k_Dataset.zip").read_bytes()
    part = whole[: len(whole) // 2]
    (tmp_path / "Flickr8k_Dataset.zip.part").write_bytes(part)
    _answer(206, {"Content-Length": str(len(whole)), "Content-Range": f"bytes 0-{len(whole) - 1}/{len(whole)}"},
            whole)
    archive = Archive(f"{scripted_server}/Flickr8k_Dataset.zip", archives[0].md5)
    with pytest.raises(UserError, match=f"asked for the bytes from {len(part)}.*Content-Range: bytes 0-"):
        fetch(archive, tmp_path, progress=False, timeout=5)
    assert (tmp_path / "Flickr8k_Dataset.zip.part").read_bytes() == part


def test_a_malformed_content_length_is_read_as_unknown(mirror, scripted_server, tmp_path):
    folder, archives = mirror
    whole = (folder / "Flickr8k_Dataset.zip").read_bytes()
    _answer(200, {"Content-Length": "a lot"}, whole)
    path = fetch(Archive(f"{scripted_server}/Flickr8k_Dataset.zip", archives[0].md5), tmp_path,
                 progress=False, timeout=5)
    assert path.read_bytes() == whole


def test_an_unreachable_mirror_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="could not download .* run the command again"):
        fetch(Archive(f"file://{tmp_path}/missing.zip", "0" * 32), tmp_path, progress=False)


def test_an_archive_member_outside_the_folder_is_refused(tmp_path):
    evil = _zip(tmp_path / "evil.zip", {"fine.txt": "ok", "../../escaped.txt": "no"})
    with pytest.raises(UserError, match=r"member '../../escaped.txt' would be written outside"):
        unpack(evil, tmp_path / "out")
    # (zipfile itself would write it inside, as escaped.txt: refusing is ours.)
    assert not (tmp_path / "out").exists(), "a refused archive leaves nothing, not even its good members"


def test_command_line_checks_the_published_checksums(mirror, tmp_path):
    folder, _ = mirror
    completed = run_cli("data", "flickr8k", "--out", tmp_path / "f8k", "--mirror", folder.as_uri())
    assert completed.returncode == 2
    assert "Flickr8k_Dataset.zip: checksum mismatch" in completed.stderr
    assert f"expected {flickr8k.ARCHIVES[0].md5}" in completed.stderr
    assert "Traceback" not in completed.stderr


@pytest.fixture
def with_karpathy_split(mirror, tmp_path):
    out = flickr8k.prepare(tmp_path / "f8k", mirror[1], progress=False)
    # Karpathy's file, with his split differing from the release's files so the test can tell.
    splits = {"train": NAMES[:6], "restval": NAMES[6:8], "val": NAMES[8:11], "test": NAMES[11:]}
    images = [{"filename": name, "split": split, "sentences": [{"raw": f"karpathy {name} {k}"} for k in range(5)]}
              for split, names in splits.items() for name in names]
    (out / KARPATHY_SPLIT).write_text(json.dumps({"dataset": "flickr8k", "images": images}))
    return out


def test_karpathy_split_file_wins_when_present(with_karpathy_split):
    splits = load_captions(with_karpathy_split)
    assert [len(splits[s]) for s in ("train", "val", "test")] == [8, 3, 1], "restval joins train"
    assert splits["test"].captions[0][0] == f"karpathy {NAMES[11]} 0"


def test_a_damaged_karpathy_file_names_itself(with_karpathy_split):
    (with_karpathy_split / KARPATHY_SPLIT).write_text('{"images": [{"filename": "x.jpg"}]}')
    with pytest.raises(UserError, match=r"dataset_flickr8k.json: not Karpathy's split file \(KeyError"):
        load_captions(with_karpathy_split)


def test_train_data_flickr8k_downloads_into_the_data_root(mirror, monkeypatch, data_root):
    from mmkeras.data.catalog import load_dataset
    monkeypatch.setattr(flickr8k, "ARCHIVES", mirror[1])
    folder, splits = load_dataset("flickr8k", progress=False)
    assert folder == data_root / "flickr8k"
    assert [len(splits[s]) for s in ("train", "val", "test")] == [8, 2, 2]
