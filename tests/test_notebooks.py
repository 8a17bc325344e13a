"""The notebooks' own promises, checked without running them (nbval runs them)."""

import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))
# The captioning course, which runs on shapes, Flickr8k or COCO; 04's tasks are made from
# the shapes' scenes, so it has no dataset choice.
CAPTION_NOTEBOOKS = NOTEBOOKS[:3]


def test_the_notebooks_are_there():
    assert [p.name for p in NOTEBOOKS] == [
        "01_preprocessing.ipynb", "02_training.ipynb", "03_evaluation.ipynb",
        "04_multimodal_tasks.ipynb", "05_transformers.ipynb", "06_text_to_image.ipynb", "07_audio.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_colab_badge_opens_this_very_notebook(path):
    first_cell = "".join(json.loads(path.read_text())["cells"][0]["source"])
    assert "colab.research.google.com/assets/colab-badge.svg" in first_cell
    assert f"/blob/main/notebooks/{path.name})" in first_cell


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_with_outputs_and_integer_execution_counts(path):
    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    assert any(c["outputs"] for c in cells), "commit the outputs of a full run"
    for cell in cells:
        if cell["outputs"]:
            assert isinstance(cell["execution_count"], int)
        assert not any(o["output_type"] == "error" for o in cell["outputs"])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_one_smoke_switch_read_from_the_environment(path):
    sources = ["".join(c["source"]) for c in json.loads(path.read_text())["cells"]]
    assert sum('os.environ.get("MMKERAS_SMOKE")' in s for s in sources) == 1


@pytest.mark.parametrize("path", CAPTION_NOTEBOOKS, ids=lambda p: p.name)
def test_one_line_chooses_the_dataset_and_every_choice_is_known(path):
    from mmkeras.config import DATASETS
    cells = json.loads(path.read_text())["cells"]
    sources = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    lines = [line for s in sources for line in s.splitlines() if line.startswith("DATASET = ")]
    assert lines == ['DATASET = "shapes"'], "one line, committed on the bundled data"
    overview = "".join(cells[0]["source"])
    assert all(f'"{name}"`' in overview for name in DATASETS), "the choices, named"
    # What to expect on each dataset: one table, in the README, linked from every notebook.
    assert "(../README.md#photos-with-one-line)" in overview
    readme = (path.parents[1] / "README.md").read_text()
    table = readme[readme.index("### Photos with one line"):]
    assert all(f'| `"{name}"` |' in table for name in DATASETS)
    # Settings follow the choice rather than being written out for the shapes.
    assert not any("image_size=64" in s or "evaluation_images(test_split, 64)" in s for s in sources)
