"""The report of a run: CSVs, figures and one self-contained report.html in the run folder.

Everything is computed from one evaluation of the final model on the whole test split, so the
gallery, the Grad-CAM figure, the per-class table and the confusion matrix all describe the same
predictions. Grad-CAM is run on exactly the images listed in misclassified.csv, in that order.
"""

from __future__ import annotations

import base64
import csv
import html
import io
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from torch import nn

from ..config import TrainConfig
from ..data import Split, to_model_input
from ..evaluate import Evaluation
from ..models import default_cam_layer
from ..rundir import RunFolder
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


def write_tables(folder: RunFolder, evaluation: Evaluation, classes: list[str]) -> tuple[np.ndarray, list[dict]]:
    confusion = confusion_matrix(evaluation.labels, evaluation.predictions, len(classes))
    per_class = per_class_accuracy(confusion)
    folder.write_text("confusion.csv", csv_text(["true \\ predicted", *classes],
                                                [[name, *row.tolist()] for name, row in zip(classes, confusion)]))
    folder.write_text("per_class.csv", csv_text(["class", "correct", "total", "accuracy"],
                                                [[classes[r["class_index"]], r["correct"], r["total"],
                                                  f"{r['accuracy']:.6f}"] for r in per_class]))
    plots.save_png(plots.confusion_figure(confusion, classes), folder.file("confusion.png"))
    plots.save_png(plots.per_class_figure(per_class, classes, evaluation.accuracy), folder.file("per_class.png"))
    return confusion, per_class


def misclassified_figure(wrong: list[dict], split: Split, classes: list[str]) -> Figure:
    """The wrong images in their real colours, titled with test index, true and predicted class."""
    panels = [plots.to_hwc(split.images[w["index"]].cpu()) for w in wrong]
    titles = [f"#{w['index']} true: {classes[w['true']]}\npred: {classes[w['predicted']]} ({w['confidence']:.0%})"
              for w in wrong]
    return plots.image_grid(panels, titles, columns=5, title=f"{len(wrong)} misclassified test images")


def misclassified_rows(wrong: list[dict], classes: list[str]) -> list[list]:
    return [[w["index"], classes[w["true"]], classes[w["predicted"]], w["confidence"]] for w in wrong]


def write_misclassified(folder: RunFolder, wrong: list[dict], split: Split, classes: list[str]) -> None:
    rows = [[*row[:3], f"{row[3]:.6f}"] for row in misclassified_rows(wrong, classes)]
    folder.write_text("misclassified.csv", csv_text(list(MISCLASSIFIED_COLUMNS), rows))
    plots.save_png(misclassified_figure(wrong, split, classes), folder.file("misclassified.png"))


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


def render_html(folder: RunFolder, *, cfg: TrainConfig, summary: dict, per_class: list[dict], classes: list[str],
                wrong_count: int) -> str:
    f = folder.file
    acc = summary.get("test_accuracy")
    headline = (f"Test accuracy <b>{acc:.2%}</b> on {summary.get('test_images')} test images "
                f"(final model, whole test split)") if acc is not None else "no test accuracy recorded"
    facts = run_facts(summary)
    settings = [[k, v] for k, v in cfg.to_dict().items()]
    class_rows = [[classes[r["class_index"]], r["correct"], r["total"], f"{r['accuracy']:.2%}"] for r in per_class]
    summary_text = f("model_summary.txt").read_text() if f("model_summary.txt").is_file() else ""
    layer = cam_layer_name(cfg)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>cifarlab report: {html.escape(str(folder.path.name))}</title><style>{STYLE}</style></head>
<body>
<h1>cifarlab report</h1>
<p class="note">{html.escape(str(folder.path))}</p>
<p class="headline">{headline}</p>
{html_table(None, facts)}
<h2>Learning curves</h2>
<p class="note">Test loss and accuracy per epoch are recorded for these curves only; nothing was chosen on them.</p>
{image_tag(f("curves.png"), "loss, accuracy and learning rate per epoch")}
<h2>Accuracy per class</h2>
<div class="grid"><div>{html_table(["class", "correct", "total", "accuracy"], class_rows)}</div>
<div>{image_tag(f("per_class.png"), "test accuracy per class")}</div></div>
<h2>Confusion matrix</h2>
{image_tag(f("confusion.png"), "test confusion matrix")}
<h2>Misclassified test images</h2>
<p class="note">{wrong_count} test images the final model gets wrong ({html.escape(cfg.misclassified_order)}
order), in their real colours, titled with test index, true class, predicted class and confidence.</p>
{image_tag(f("misclassified.png"), "misclassified test images")}
<h2>Grad-CAM on the same images</h2>
<p class="note">{html.escape(cfg.cam)} heat maps on layer <code>{html.escape(layer)}</code>, for the predicted class
{"and the true class " if cfg.cam_true_class else ""}of exactly the images above, in the same order. On 32&times;32
inputs the last stage of a ResNet (<code>layer4</code>) is a 4&times;4 map; <code>--cam-layer layer3</code>
gives 8&times;8.</p>
{image_tag(f("gradcam.png"), "Grad-CAM heat maps")}
<h2>Settings</h2>
{html_table(["setting", "value"], settings)}
<h2>Model summary</h2>
<details><summary>layer table (torchinfo)</summary><pre>{html.escape(summary_text)}</pre></details>
</body></html>
"""


def write_report(folder: RunFolder, *, model: nn.Module, info: dict, cfg: TrainConfig, test_split: Split,
                 evaluation: Evaluation, history: list[dict], summary: dict, device) -> None:
    classes = info["classes"]
    target_layer(model, cam_layer_name(cfg))  # refuse a wrong layer before any file is replaced
    plots.save_png(plots.curves_figure(history, title=plots.curves_title(summary)), folder.file("curves.png"))
    _, per_class = write_tables(folder, evaluation, classes)
    wrong = misclassified(evaluation.logits, evaluation.labels, cfg.misclassified, cfg.misclassified_order)
    write_misclassified(folder, wrong, test_split, classes)
    if wrong:
        plots.save_png(gradcam_figure(wrong, test_split, classes, model=model, info=info, method=cfg.cam,
                                      layer=cam_layer_name(cfg), true_class=cfg.cam_true_class, device=device),
                       folder.file("gradcam.png"))
    else:  # no image to explain: a Grad-CAM figure of an earlier report would not show "the images above"
        folder.file("gradcam.png").unlink(missing_ok=True)
    if not folder.file("model_summary.txt").is_file():
        from ..summary import model_summary

        folder.write_text("model_summary.txt", model_summary(model) + "\n")
    folder.write_text("report.html", render_html(folder, cfg=cfg, summary=summary, per_class=per_class,
                                                 classes=classes, wrong_count=len(wrong)))
