"""The package's layering holds (import-linter), and saved models keep loading across moves."""

import subprocess
import sys
from pathlib import Path

import keras

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
RUFF = Path(sys.executable).with_name("ruff")


def lint_imports(*arguments) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", *arguments], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_imports_flow_one_way_and_no_folder_has_an_import_circle():
    result = lint_imports()
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_layers_contract_catches_a_task_that_imports_the_captioner(tmp_path):
    """The contract can fail: a copy of the package where tasks imports caption breaks it."""
    copy = tmp_path / "checkout"
    copy.mkdir()
    (copy / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    subprocess.run(["cp", "-r", str(ROOT / "mmkeras"), str(copy / "mmkeras")], check=True)
    vqa = copy / "mmkeras" / "tasks" / "vqa.py"
    vqa.write_text(vqa.read_text() + "\nfrom mmkeras.caption import decoding  # noqa: E402,F401\n")
    result = subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=copy, capture_output=True,
                            text=True, timeout=300, env={"PYTHONPATH": str(copy), "PATH": ""})
    assert result.returncode != 0
    assert "mmkeras.tasks.vqa -> mmkeras.caption.decoding" in result.stdout


def test_ruff_finds_nothing():
    result = subprocess.run([str(RUFF), "check", "--no-cache", "mmkeras", "tests", "benchmarks"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_registered_names_are_the_ones_saved_models_refer_to():
    """Models saved before the layout change name these; moving a class must not rename it."""
    from mmkeras.nn import image_encoders, layers, losses
    expected = {
        layers.WordEmbedding: "mmkeras>WordEmbedding",
        layers.PositionEmbedding: "mmkeras>PositionEmbedding",
        layers.OuterProduct: "mmkeras>OuterProduct",
        layers.ContrastiveLogits: "mmkeras>ContrastiveLogits",
        layers.CoordinateChannels: "mmkeras>CoordinateChannels",
        layers.FeaturesAtCoordinates: "mmkeras>FeaturesAtCoordinates",
        layers.NoiseLevelEmbedding: "mmkeras>NoiseLevelEmbedding",
        losses.MaskedAccuracy: "mmkeras>MaskedAccuracy",
        losses.SymmetricContrastiveLoss: "mmkeras>SymmetricContrastiveLoss",
        image_encoders.BackbonePreprocessing: "mmkeras>BackbonePreprocessing",
    }
    for cls, name in expected.items():
        assert keras.saving.get_registered_name(cls) == name
        assert keras.saving.get_registered_object(name) is cls
