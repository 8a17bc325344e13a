"""Loading what others wrote must not run their code or read outside the dataset folder."""

import io
import json
import re
import shutil
import tokenize
import zipfile
from pathlib import Path

import keras
import pytest

from mmkeras.data.folder import SkippedDataWarning, load_captions
from mmkeras.errors import UserError
from mmkeras.runs import load_model as load_caption_model

ROOT = Path(__file__).resolve().parents[1]
UNSAFE = re.compile(r"\b(pickle|dill|joblib|cloudpickle|Lambda|eval|exec)\b|"
                    r"allow_pickle = True|safe_mode = False")


def _code_only(source: str) -> str:
    """The names and operators of ``source``: comments and strings (docstrings) left out."""
    kept = [token.string for token in tokenize.generate_tokens(io.StringIO(source).readline)
            if token.type in (tokenize.NAME, tokenize.OP, tokenize.NUMBER)]
    return " ".join(kept)


def _code_we_ship():
    for path in sorted((ROOT / "mmkeras").rglob("*.py")) + sorted((ROOT / "benchmarks").glob("*.py")):
        yield str(path.relative_to(ROOT)), _code_only(path.read_text())
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(notebook.read_text())["cells"]
        for index, cell in enumerate(cells):
            if cell["cell_type"] == "code":
                source = "".join(cell["source"])
                # Shell lines (!pip ...) are not Python; drop them before tokenising.
                source = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("!", "%")))
                yield f"{notebook.name} cell {index}", _code_only(source)


def test_no_pickle_lambda_eval_or_unsafe_loading_in_the_package_or_notebooks():
    found = [f"{where}: {match.group(0)}" for where, source in _code_we_ship()
             for match in UNSAFE.finditer(source)]
    assert not found


def test_a_saved_model_holds_only_config_and_weights_and_no_lambda(trained_run):
    out, _ = trained_run
    with zipfile.ZipFile(out / "model.keras") as archive:
        assert sorted(archive.namelist()) == ["config.json", "metadata.json", "model.weights.h5"]
        config = archive.read("config.json").decode()
    class_names = set(re.findall(r'"class_name": "(\w+)"', config))
    assert "Lambda" not in class_names and "WordEmbedding" in class_names


def test_a_model_with_a_lambda_layer_is_refused(tmp_path):
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs))
    model.save(tmp_path / "lambda.keras")
    with pytest.raises(UserError, match=r"lambda.keras: not a readable .keras model.*Lambda"):
        load_caption_model(tmp_path / "lambda.keras")


def test_a_symlink_out_of_the_image_folder_is_refused(small_shapes, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(small_shapes, root)
    secret = tmp_path / "secret.png"
    shutil.copy(root / "Images" / "test_00000.png", secret)
    (root / "Images" / "link.png").symlink_to(secret)
    with open(root / "captions.txt", "a") as handle:
        handle.write("link.png#0\ta caption\n")
    with open(root / "test.txt", "a") as handle:
        handle.write("link.png\n")
    with pytest.warns(SkippedDataWarning, match=r"outside Images/ \(refused\) \(link.png\)"):
        splits = load_captions(root)
    assert str(secret) not in splits["test"].image_paths
