import csv
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cifarlab
import torch
from helpers import write_cifar10
from PIL import Image

from cifarlab import train
from cifarlab.cli import main
from cifarlab.config import FIELDS
from cifarlab.data import load_splits, to_model_input
from cifarlab.explain import report as report_module
from cifarlab.explain.analysis import misclassified
from cifarlab.explain.gradcam import cam_maps
from cifarlab.explain.report import report_figures
from cifarlab.weights import load_model

MISLABELLED = 15  # the first test images carry another class's label: the gallery is never empty
REPORT_FILES = ["curves.png", "misclassified.png", "misclassified.csv", "gradcam.png", "per_class.csv",
                "per_class.png", "confusion.png", "confusion.csv", "model_summary.txt", "report.html"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One small trained run with its report, shared by the tests of this file."""
    root = tmp_path_factory.mktemp("report")
    data = write_cifar10(root / "data", train_per_class=30, test_per_class=12, mislabelled_test=MISLABELLED)
    run = root / "run"
    result = train(model="compact", data_dir=str(data), epochs=3, batch_size=20, lr=0.05, precision="fp32",
                   device="cpu", progress=False, out=str(run), misclassified=10, cam_true_class=True)
    return result, run, data


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_every_report_file_is_written(trained):
    _, run, _ = trained
    for name in REPORT_FILES:
        assert (run / name).is_file() and (run / name).stat().st_size > 0, name


def test_misclassified_images_are_wrong_for_the_saved_model(trained):
    result, run, data = trained
    rows = read_csv(run / "misclassified.csv")
    assert rows[0] == ["test_index", "true", "predicted", "confidence"]
    rows = rows[1:]
    wrong_total = result.summary["test_images"] - result.summary["test_correct"]
    assert len(rows) == min(10, wrong_total) and len(rows) > 0
    model, info = load_model(run / "model.safetensors")
    test = load_splits("cifar10", data).test
    index = [int(r[0]) for r in rows]
    assert index == sorted(index)  # index order
    with torch.no_grad():
        logits = model(to_model_input(test.images[index], info["mean"], info["std"], True))
    classes = info["classes"]
    for row, predicted, label in zip(rows, logits.argmax(1).tolist(), test.labels[index].tolist()):
        assert row[1] == classes[label] and row[2] == classes[predicted] and predicted != label


def test_gradcam_is_computed_on_exactly_the_gallery_images_in_order(trained, monkeypatch, tmp_path):
    result, run, data = trained
    seen = []
    real = report_module.cam_maps

    def recording(model, inputs, classes, method, layer):
        seen.append((inputs.clone(), list(classes)))
        return real(model, inputs, classes, method, layer)

    monkeypatch.setattr(report_module, "cam_maps", recording)
    assert main(["report", str(run), "--misclassified", "6", "--no-cam-true-class"]) == 0
    rows = read_csv(run / "misclassified.csv")[1:]
    index = [int(r[0]) for r in rows]
    model, info = load_model(run / "model.safetensors")
    test = load_splits("cifar10", data).test
    expected = to_model_input(test.images[index], info["mean"], info["std"], channels_last=False)
    assert len(seen) == 1 and torch.equal(seen[0][0], expected)
    assert seen[0][1] == [info["classes"].index(r[2]) for r in rows]


def test_heat_maps_have_the_image_size_values_in_0_1_and_are_not_constant(trained):
    result, run, data = trained
    model, info = load_model(run / "model.safetensors")
    test = load_splits("cifar10", data).test
    correct = slice(MISLABELLED, MISLABELLED + 8)  # labelled with their own class
    inputs = to_model_input(test.images[correct], info["mean"], info["std"], channels_last=False)
    for method in ("gradcam", "gradcam++", "eigencam"):
        maps = cam_maps(model, inputs, test.labels[correct].tolist(), method, "features")
        assert maps.shape == (8, 32, 32)
        assert maps.min() >= 0 and maps.max() <= 1
        assert np.mean([m.std() > 1e-3 for m in maps]) >= 0.75


def test_per_class_and_confusion_agree_with_the_test_accuracy(trained):
    result, run, _ = trained
    per_class = read_csv(run / "per_class.csv")[1:]
    confusion = np.array([[int(v) for v in row[1:]] for row in read_csv(run / "confusion.csv")[1:]])
    totals = np.array([int(r[2]) for r in per_class])
    accuracies = np.array([float(r[3]) for r in per_class])
    assert confusion.sum() == result.summary["test_images"] == totals.sum()
    assert np.diag(confusion).tolist() == [int(r[1]) for r in per_class]
    assert (accuracies * totals).sum() / totals.sum() == pytest.approx(result.summary["test_accuracy"], abs=1e-6)
    assert np.diag(confusion).sum() == result.summary["test_correct"]


def test_report_html_is_self_contained(trained):
    _, run, _ = trained
    page = (run / "report.html").read_text()
    images = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert len(images) == len(report_figures()) == 6
    assert all(src.startswith("data:image/png;base64,") for src in images)
    headings = re.findall(r"<h2>([^<]+)</h2>", page)
    assert headings[:6] == [entry.title for _, entry in report_figures()]  # in the file table's order
    assert "http://" not in page and "https://" not in page
    assert f"{trained[0].summary['test_accuracy']:.2%}" in page


def test_misclassified_by_confidence_puts_the_surest_mistakes_first():
    logits = torch.tensor([[5.0, 0, 0], [0, 1, 0], [0, 0, 9], [3, 0, 0], [0, 2, 0]])
    labels = torch.tensor([1, 1, 0, 0, 0])
    by_index = misclassified(logits, labels, 10, "index")
    assert [w["index"] for w in by_index] == [0, 2, 4]
    by_confidence = misclassified(logits, labels, 2, "confidence")
    assert [w["index"] for w in by_confidence] == [2, 0]
    assert by_confidence[0]["confidence"] >= by_confidence[1]["confidence"]


def test_predict_prints_top3_and_writes_cam_overlays(trained, tmp_path, capsys):
    _, run, _ = trained
    picture = tmp_path / "mine.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (80, 120, 3), dtype=np.uint8)).save(picture)
    assert main(["predict", str(run), str(picture), "--cam", str(tmp_path / "cams"), "--device", "cpu"]) == 0
    line = capsys.readouterr().out.strip()
    probabilities = [float(p) for p in re.findall(r" (\d+\.\d)%", line)]
    assert len(probabilities) == 3 and probabilities == sorted(probabilities, reverse=True)
    assert sum(probabilities) <= 100.05
    assert Image.open(tmp_path / "cams" / "mine_cam.png").size == (512, 256)


def test_compare_prints_a_table_and_writes_one_figure(trained, tmp_path, capsys):
    _, run, _ = trained
    figure = tmp_path / "compare.png"
    assert main(["compare", str(run), str(run), "--out", str(figure)]) == 0
    out = capsys.readouterr().out
    assert out.count("compact") >= 2 and f"{trained[0].summary['test_accuracy']:.2%}" in out
    assert Image.open(figure).size[0] > 300


def test_an_unknown_cam_layer_is_refused_with_the_layers_named(trained, capsys):
    _, run, _ = trained
    assert main(["report", str(run), "--cam-layer", "layer9"]) == 2
    assert "cam_layer" in capsys.readouterr().err


def test_a_wrong_cam_layer_is_refused_before_training(tmp_path, cifar_dir, capsys):
    out = tmp_path / "never"
    assert main(["train", "--model", "compact", "--data-dir", str(cifar_dir), "--cam-layer", "layer9",
                 "--out", str(out), "--no-progress"]) == 2
    assert "cam_layer" in capsys.readouterr().err and not out.exists()


def test_a_wrong_cam_layer_leaves_the_existing_report_alone(trained, capsys):
    _, run, _ = trained
    before = (run / "misclassified.csv").read_text()
    assert main(["report", str(run), "--cam-layer", "layer9", "--misclassified", "3"]) == 2
    assert (run / "misclassified.csv").read_text() == before


def test_tensorboard_logs_every_epoch(tmp_path, quick):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train({**quick, "tensorboard": True, "report": True, "misclassified": 4})
    events = EventAccumulator(str(Path(quick["out"]) / "tensorboard")).Reload()
    assert [e.step for e in events.Scalars("accuracy/test")] == [1, 2]
    assert "report/gradcam" in events.Tags()["images"]


def test_precision_and_recall_per_class_are_read_off_the_confusion_matrix(trained):
    _, run, _ = trained
    confusion = np.array([[int(v) for v in row[1:]] for row in read_csv(run / "confusion.csv")[1:]])
    figure = cifarlab.load_run(run).plot("precision_recall")
    bars = figure.axes[0].patches
    heights = np.array([bar.get_height() for bar in bars]) / 100
    n = len(confusion)
    precision = np.diag(confusion) / np.maximum(confusion.sum(0), 1)
    recall = np.diag(confusion) / np.maximum(confusion.sum(1), 1)
    assert np.allclose(heights[:n], precision) and np.allclose(heights[n:], recall)
    assert (run / "precision_recall.png").is_file()


@settings(max_examples=15, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=2, max_size=20))
def test_the_per_class_chart_keeps_its_legend_and_numbers_off_the_bars(accuracies):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from cifarlab.explain.plots import per_class_figure

    figure = per_class_figure([{"accuracy": a} for a in accuracies], [f"c{i}" for i in range(len(accuracies))],
                              overall=float(np.mean(accuracies)))
    canvas = FigureCanvasAgg(figure)
    canvas.draw()  # lays the figure out as it is saved
    renderer = canvas.get_renderer()
    ax = figure.axes[0]
    bars = [patch.get_window_extent(renderer) for patch in ax.patches]
    labels = [text.get_window_extent(renderer) for text in ax.texts]
    legend = ax.get_legend().get_window_extent(renderer)
    assert len(labels) == len(accuracies)
    assert [label.get_text() for label in ax.texts] == [f"{100 * a:.1f}" for a in accuracies]
    for box in bars + labels:
        assert not legend.overlaps(box)
    for bar, label in zip(bars, labels):
        assert label.y0 >= bar.y1 - 0.5  # each number stands on its bar, not inside it
