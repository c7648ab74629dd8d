"""The report of a run: CSVs, figures and one self-contained report.html in the run folder.

Everything is computed from one evaluation of the final model on the whole test split (`ReportInputs`),
so the gallery, the Grad-CAM figure, the per-class table and the confusion matrix all describe the same
predictions. Grad-CAM is run on exactly the images listed in misclassified.csv, in that order.

Each figure is a function of the ReportInputs declared with `@report_figure(file, title, note)`: that puts it
in the run folder's file table (rundir.RUN_FILES), which the report draws in order, --overwrite clears and
TensorBoard shows. A new figure is one such function.
"""

from __future__ import annotations

import base64
import csv
import html
import io
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np
from matplotlib.figure import Figure
from torch import nn

from ..config import TrainConfig
from ..data import Split, to_model_input
from ..evaluate import Evaluation
from ..models import default_cam_layer
from ..rundir import RUN_FILES, RunFile, RunFolder
from . import plots
from .analysis import confusion_matrix, misclassified, per_class_accuracy
from .facts import run_facts
from .gradcam import cam_maps, overlay, target_layer

MISCLASSIFIED_COLUMNS = ("test_index", "true", "predicted", "confidence")


def cam_layer_name(cfg: TrainConfig) -> str:
    return cfg.cam_layer or default_cam_layer(cfg.model, cfg.stages)


def csv_text(header: list[str], rows: list[list]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


@dataclass
class ReportInputs:
    """What every table and figure of the report is drawn from: one evaluation of the final model."""

    cfg: TrainConfig
    info: dict
    model: nn.Module
    test_split: Split
    evaluation: Evaluation
    history: list[dict]
    summary: dict
    device: object

    @property
    def classes(self) -> list[str]:
        return self.info["classes"]

    @cached_property
    def confusion(self) -> np.ndarray:
        return confusion_matrix(self.evaluation.labels, self.evaluation.predictions, len(self.classes))

    @cached_property
    def per_class(self) -> list[dict]:
        return per_class_accuracy(self.confusion)

    @cached_property
    def wrong(self) -> list[dict]:
        return misclassified(self.evaluation.logits, self.evaluation.labels, self.cfg.misclassified,
                             self.cfg.misclassified_order)


def report_figure(file_name: str, title: str, note: str | Callable[[ReportInputs], str] = "",
                  beside: Callable[[ReportInputs], str] | None = None):
    """Declare a report figure: `draw(inputs) -> Figure | None` saved as `file_name`, shown in report.html
    under `title` with `note` (and the HTML `beside(inputs)` next to it), in the order declared (None:
    nothing to show, and an old file is removed)."""
    def declare(draw: Callable[[ReportInputs], Figure | None]):
        RUN_FILES.register(file_name, RunFile("report", title, draw=draw, note=note, beside=beside))
        return draw

    return declare


def report_figures() -> list[tuple[str, RunFile]]:
    return [(name, RUN_FILES[name]) for name in RUN_FILES if RUN_FILES[name].draw is not None]


for _name, _title in (("misclassified.csv", "the misclassified images: test index, true, predicted, confidence"),
                      ("per_class.csv", "correct, total and accuracy per class"),
                      ("confusion.csv", "the test confusion matrix"),
                      ("report.html", "this report, one self-contained page")):
    RUN_FILES.register(_name, RunFile("report", _title))


def write_tables(folder: RunFolder, inputs: ReportInputs) -> None:
    classes = inputs.classes
    folder.write_text("confusion.csv", csv_text(["true \\ predicted", *classes],
                                                [[name, *row.tolist()] for name, row in zip(classes, inputs.confusion)]))
    folder.write_text("per_class.csv", csv_text(["class", "correct", "total", "accuracy"],
                                                [[classes[r["class_index"]], r["correct"], r["total"],
                                                  f"{r['accuracy']:.6f}"] for r in inputs.per_class]))
    rows = [[*row[:3], f"{row[3]:.6f}"] for row in misclassified_rows(inputs.wrong, classes)]
    folder.write_text("misclassified.csv", csv_text(list(MISCLASSIFIED_COLUMNS), rows))


def misclassified_figure(wrong: list[dict], split: Split, classes: list[str]) -> Figure:
    """The wrong images in their real colours, titled with test index, true and predicted class."""
    panels = [plots.to_hwc(split.images[w["index"]].cpu()) for w in wrong]
    titles = [f"#{w['index']} true: {classes[w['true']]}\npred: {classes[w['predicted']]} ({w['confidence']:.0%})"
              for w in wrong]
    return plots.image_grid(panels, titles, columns=5, title=f"{len(wrong)} misclassified test images")


def misclassified_rows(wrong: list[dict], classes: list[str]) -> list[list]:
    return [[w["index"], classes[w["true"]], classes[w["predicted"]], w["confidence"]] for w in wrong]


def gradcam_figure(wrong: list[dict], split: Split, classes: list[str], *, model: nn.Module, info: dict,
                   method: str, layer: str, true_class: bool, device) -> Figure:
    """Heat maps of `method` on `layer` over exactly the `wrong` images, in their order: for the
    predicted class, and with `true_class` also for the true one beside it."""
    index = [w["index"] for w in wrong]
    images = split.images[index].to(device)
    inputs = to_model_input(images, info["mean"], info["std"], channels_last=False)
    predicted_maps = cam_maps(model, inputs, [w["predicted"] for w in wrong], method, layer)
    true_maps = cam_maps(model, inputs, [w["true"] for w in wrong], method, layer) if true_class else None
    raw = images.cpu().numpy()
    panels, titles = [], []
    for k, w in enumerate(wrong):
        panels.append(overlay(raw[k], predicted_maps[k]))
        titles.append(f"#{w['index']} for pred: {classes[w['predicted']]}\n(true: {classes[w['true']]})")
        if true_maps is not None:
            panels.append(overlay(raw[k], true_maps[k]))
            titles.append(f"#{w['index']} for true: {classes[w['true']]}")
    columns = 10 if true_maps is not None else 5
    side = "predicted | true class" if true_maps is not None else "predicted class"
    return plots.image_grid(panels, titles, columns=columns,
                            title=f"{method} on {layer} ({side}), the misclassified images in the same order")


@report_figure("curves.png", "Learning curves", "Test loss and accuracy per epoch are recorded for these curves "
                                                  "only; nothing was chosen on them.")
def curves(inputs: ReportInputs) -> Figure:
    return plots.curves_figure(inputs.history, title=plots.curves_title(inputs.summary))


def per_class_table(inputs: ReportInputs) -> str:
    rows = [[inputs.classes[r["class_index"]], r["correct"], r["total"], f"{r['accuracy']:.2%}"]
            for r in inputs.per_class]
    return html_table(["class", "correct", "total", "accuracy"], rows)


@report_figure("per_class.png", "Accuracy per class", beside=per_class_table)
def per_class(inputs: ReportInputs) -> Figure:
    return plots.per_class_figure(inputs.per_class, inputs.classes, inputs.evaluation.accuracy)


@report_figure("precision_recall.png", "Precision and recall per class",
               "Recall: the share of a class's test images called that class (its accuracy above). Precision: the "
               "share of the images called that class that are of it.")
def precision_and_recall(inputs: ReportInputs) -> Figure:
    correct = np.diag(inputs.confusion)
    precision = correct / np.maximum(inputs.confusion.sum(0), 1)  # columns: what the model called each class
    recall = correct / np.maximum(inputs.confusion.sum(1), 1)  # rows: what each class's images are
    return plots.precision_recall_figure(precision, recall, inputs.classes)


@report_figure("confusion.png", "Confusion matrix")
def confusion(inputs: ReportInputs) -> Figure:
    return plots.confusion_figure(inputs.confusion, inputs.classes)


@report_figure("misclassified.png", "Misclassified test images",
               lambda inputs: f"{len(inputs.wrong)} test images the final model gets wrong "
                              f"({inputs.cfg.misclassified_order} order), in their real colours, titled with test "
                              "index, true class, predicted class and confidence.")
def misclassified_images(inputs: ReportInputs) -> Figure:
    return misclassified_figure(inputs.wrong, inputs.test_split, inputs.classes)


def gradcam_note(inputs: ReportInputs) -> str:
    cfg = inputs.cfg
    return (f"{cfg.cam} heat maps on layer {cam_layer_name(cfg)}, for the predicted class "
            f"{'and the true class ' if cfg.cam_true_class else ''}of exactly the images above, in the same order. "
            "On 32x32 inputs the last stage of a ResNet (layer4) is a 4x4 map; --cam-layer layer3 gives 8x8.")


@report_figure("gradcam.png", "Grad-CAM on the same images", gradcam_note)
def gradcam(inputs: ReportInputs) -> Figure | None:
    if not inputs.wrong:  # no image to explain: a Grad-CAM figure of an earlier report would not show "the images above"
        return None
    return gradcam_figure(inputs.wrong, inputs.test_split, inputs.classes, model=inputs.model, info=inputs.info,
                          method=inputs.cfg.cam, layer=cam_layer_name(inputs.cfg), true_class=inputs.cfg.cam_true_class,
                          device=inputs.device)


def image_tag(path: Path, alt: str) -> str:
    if not path.is_file():
        return f"<p><em>{html.escape(alt)}: not made</em></p>"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def html_table(header: list[str] | None, rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header or [])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    thead = f"<thead><tr>{head}</tr></thead>" if header else ""
    return f"<table>{thead}<tbody>{body}</tbody></table>"


STYLE = """
body { font-family: system-ui, -apple-system, Segoe UI, Roboto, sans-serif; margin: 0 auto; max-width: 1200px;
       padding: 1.5rem; color: #222; line-height: 1.45; }
h1 { margin-bottom: .2rem; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2rem; margin-top: 2rem; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
table { border-collapse: collapse; margin: .5rem 0; font-size: .9rem; }
th, td { border: 1px solid #ddd; padding: .25rem .6rem; text-align: left; }
th { background: #f4f4f4; } .headline { font-size: 1.4rem; margin: .6rem 0; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 1rem; }
pre { background: #f8f8f8; padding: .8rem; overflow-x: auto; font-size: .75rem; }
.note { color: #555; font-size: .9rem; }
"""


def figure_section(folder: RunFolder, inputs: ReportInputs, name: str, entry: RunFile) -> str:
    note = entry.note(inputs) if callable(entry.note) else entry.note
    body = image_tag(folder.file(name), entry.title)
    if entry.beside is not None:
        body = f'<div class="grid"><div>{entry.beside(inputs)}</div><div>{body}</div></div>'
    note_html = f'<p class="note">{html.escape(note)}</p>\n' if note else ""
    return f"<h2>{html.escape(entry.title)}</h2>\n{note_html}{body}"


def render_html(folder: RunFolder, inputs: ReportInputs) -> str:
    f = folder.file
    acc = inputs.summary.get("test_accuracy")
    headline = (f"Test accuracy <b>{acc:.2%}</b> on {inputs.summary.get('test_images')} test images "
                f"(final model, whole test split)") if acc is not None else "no test accuracy recorded"
    settings = [[k, v] for k, v in inputs.cfg.to_dict().items()]
    summary_text = f("model_summary.txt").read_text() if f("model_summary.txt").is_file() else ""
    sections = "\n".join(figure_section(folder, inputs, name, entry) for name, entry in report_figures())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>cifarlab report: {html.escape(str(folder.path.name))}</title><style>{STYLE}</style></head>
<body>
<h1>cifarlab report</h1>
<p class="note">{html.escape(str(folder.path))}</p>
<p class="headline">{headline}</p>
{html_table(None, run_facts(inputs.summary))}
{sections}
<h2>Settings</h2>
{html_table(["setting", "value"], settings)}
<h2>Model summary</h2>
<details><summary>layer table (torchinfo)</summary><pre>{html.escape(summary_text)}</pre></details>
</body></html>
"""


def write_report(folder: RunFolder, inputs: ReportInputs) -> None:
    """Every table and figure of the report, then report.html; model_summary.txt if the run has none."""
    target_layer(inputs.model, cam_layer_name(inputs.cfg))  # refuse a wrong layer before any file is replaced
    write_tables(folder, inputs)
    for name, entry in report_figures():
        figure = entry.draw(inputs)
        if figure is None:
            folder.file(name).unlink(missing_ok=True)
        else:
            plots.save_png(figure, folder.file(name))
    if not folder.file("model_summary.txt").is_file():
        from ..summary import model_summary

        folder.write_text("model_summary.txt", model_summary(inputs.model) + "\n")
    folder.write_text("report.html", render_html(folder, inputs))
