"""The example notebook, run top to bottom in a real Jupyter kernel on a small real subset of CIFAR-10."""

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SHARED_DATA

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "layernorm_assignment.ipynb"
MAKER = SHARED_DATA / "make_cifar10_batches.py"

pytestmark = pytest.mark.skipif(not (MAKER.is_file() and (SHARED_DATA / "cifar10-jpeg.tar.gz").is_file()),
                                reason=f"the real CIFAR-10 images are not at {SHARED_DATA} (see ../shared/README.md)")


def small_parameters(data_dir: Path) -> str:
    """The notebook's parameters cell for a short run: 300 train (50 of them for validation), 100 test images."""
    return (f"import cifarlab\nDATA_DIR = {str(data_dir)!r}\nEPOCHS = 2\nVAL_SPLIT = 50\n"
            "QUICK = dict(batch_size=50)\n")


def test_the_example_notebook_runs_and_shows_every_figure(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    subprocess.run([sys.executable, str(MAKER), str(tmp_path / "data"), "--per-class-train", "30",
                    "--per-class-test", "10"], check=True, capture_output=True, timeout=300)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), \
        "the notebook is committed without outputs"
    parameters = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(parameters) == 1 and "EPOCHS = 40" in parameters[0].source  # as written: the assignment's length
    parameters[0].source = small_parameters(tmp_path / "data")
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError on the first cell that fails

    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.execution_count for cell in code), "every code cell ran"
    outputs = {cell.source.split("(")[0].split("  #")[0].strip(): cell.outputs for cell in code}
    for call in ("run.plot_curves", "run.plot_misclassified", "run.plot_gradcam", "run.plot_per_class",
                 "run.plot_confusion"):
        assert any("image/png" in o.get("data", {}) for o in outputs[call]), f"{call} showed no figure"
    card = next(o for o in outputs["run"] if o.output_type == "execute_result")["data"]
    assert "test accuracy" in card["text/html"] and "data:image/png" in card["text/html"]
    assert "true" in next(o for o in outputs["run.most_confused"] if o.output_type == "execute_result")["data"]["text/html"]
    assert next(o for o in code[-1].outputs if o.output_type == "execute_result")["data"]["text/plain"] == "True"
    training_output = "".join(o.get("text", "") for o in code[1].outputs if o.output_type == "stream")
    assert "epoch 2/2" in training_output and "Mult-Adds" not in training_output
    stderr = "".join(o.get("text", "") for cell in code for o in cell.outputs if o.get("name") == "stderr")
    assert "Warning" not in stderr, stderr
