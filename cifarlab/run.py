"""A run as one object for notebooks: its settings, numbers, model and pictures.

`cifarlab.train(...)` returns a Run and `cifarlab.load_run(RUN_DIR)` opens one from any finished run
folder. Everything is read from the folder: the weights from model.safetensors, the curves from
metrics.csv; the test split is read (and the final model evaluated on it, once) only when a method
needs it. The figures are drawn by the same functions that write the run folder's PNGs, so a figure
in the notebook is the figure in report.html.
"""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from .errors import CifarlabError
from .explain import plots
from .explain.facts import duration, run_facts
from .rundir import METRIC_COLUMNS, read_metrics
from .saved_run import SavedRun, evaluate_test, finished_run, read_saved_run, test_split


class Text(str):
    """A string that shows as itself (not as a quoted repr) when it is a notebook cell's value."""

    def __repr__(self) -> str:
        return str(self)


def only_report_settings(settings: dict) -> None:
    """Refuse any setting but the report's own (REPORT_SETTINGS): only those may change a figure or the report."""
    from .config import REPORT_SETTINGS

    for name in settings:
        if name not in REPORT_SETTINGS:
            raise CifarlabError(f"{name}: the report takes only {', '.join(REPORT_SETTINGS)}")


class Run:
    """A finished training run.

    Attributes: `summary` (dict, as summary.json), `history` (DataFrame, a row per epoch as
    metrics.csv), `model` (the final model, eval mode), `classes`, `config` (the TrainConfig it was
    trained with), `run_dir`. Figures (`plot_*`) are matplotlib Figures; tables are DataFrames.
    All accuracies are fractions 0..1 of the final model on the whole test split.
    """

    def __init__(self, run_dir: str | os.PathLike, *, data_dir: str | None = None, device: str | None = None):
        folder, self.config, self.summary = finished_run(run_dir, {"data_dir": data_dir} if data_dir else None)
        self.run_dir: Path = folder.path
        self._folder, self._data_dir, self._device = folder, data_dir, device
        self._saved: SavedRun | None = None
        self._test = None  # (split, evaluation) of the final model on the whole test split

    # --- what the run is -------------------------------------------------------------------------
    @property
    def history(self) -> pd.DataFrame:
        """One row per epoch: the columns of metrics.csv (accuracies as fractions, NaN where not measured)."""
        path = self._folder.file("metrics.csv")
        return pd.read_csv(path) if path.is_file() else pd.DataFrame(columns=list(METRIC_COLUMNS))

    @property
    def test_accuracy(self) -> float:
        """The headline: the final model's accuracy on the whole test split (a fraction 0..1)."""
        return self.summary["test_accuracy"]

    @property
    def classes(self) -> list[str]:
        return list(self.summary["classes"])

    @property
    def model(self):
        """The final model (the one the test accuracy is of), in eval mode."""
        return self._loaded().model

    def model_summary(self) -> Text:
        """The layer table (torchinfo): layer, output shape, parameters, mult-adds."""
        path = self._folder.file("model_summary.txt")
        if path.is_file():
            return Text(path.read_text(encoding="utf-8").rstrip("\n"))
        from .summary import model_summary

        return Text(model_summary(self.model))

    def _loaded(self) -> SavedRun:
        if self._saved is None:
            self._saved = read_saved_run(self.run_dir, data_dir=self._data_dir, device=self._device)
        return self._saved

    def _evaluation(self):
        """The test split and the final model's outputs on all of it, as the run's report computes them."""
        if self._test is None:
            saved = self._loaded()
            split, _ = test_split(saved)
            self._test = split, evaluate_test(saved, split)
        return self._test

    # --- tables ----------------------------------------------------------------------------------
    def confusion(self) -> pd.DataFrame:
        """Test images by true class (rows) and predicted class (columns)."""
        table = pd.DataFrame(self._report_inputs({}).confusion, index=self.classes, columns=self.classes)
        return table.rename_axis(index="true", columns="predicted")

    def per_class(self) -> pd.DataFrame:
        """Test accuracy per class: class, correct, total, accuracy."""
        rows = self._report_inputs({}).per_class
        return pd.DataFrame([{"class": self.classes[r["class_index"]], "correct": r["correct"],
                              "total": r["total"], "accuracy": r["accuracy"]} for r in rows])

    def _wrong(self, n: int, order: str) -> list[dict]:
        return self._report_inputs({"misclassified": n, "misclassified_order": order}).wrong

    def misclassified(self, n: int = 20, order: str = "index") -> pd.DataFrame:
        """The first `n` wrong test images (order "index", or "confidence": the most confident mistakes
        first): test_index, true, predicted, confidence. The same images as plot_misclassified."""
        from .explain.report import MISCLASSIFIED_COLUMNS, misclassified_rows

        return pd.DataFrame(misclassified_rows(self._wrong(n, order), self.classes),
                            columns=list(MISCLASSIFIED_COLUMNS))

    def most_confused(self, k: int = 5) -> pd.DataFrame:
        """The `k` (true, predicted) pairs of different classes the model mixes up most, with their counts."""
        counts = self.confusion().stack().rename("count").reset_index()
        mixed = counts[(counts["true"] != counts["predicted"]) & (counts["count"] > 0)]
        return mixed.sort_values("count", ascending=False, kind="stable").head(k).reset_index(drop=True)

    # --- figures ---------------------------------------------------------------------------------
    def plot(self, figure: str, **report_settings) -> Figure:
        """Any figure of the report by name: curves, per_class, precision_recall, confusion, misclassified,
        gradcam. `report_settings` (misclassified, misclassified_order, cam, cam_layer, cam_true_class)
        override the run's own for this figure."""
        from .explain.report import report_figures

        figures = {Path(name).stem: entry for name, entry in report_figures()}
        if figure not in figures:
            raise CifarlabError(f"figure: {figure!r} is not one of: {', '.join(figures)}")
        drawn = figures[figure].draw(self._report_inputs(report_settings))
        return drawn if drawn is not None else plots.image_grid([], [], columns=1, title="no images to show")

    def _report_inputs(self, report_settings: dict):
        from .config import make_config
        from .explain.report import ReportInputs

        only_report_settings(report_settings)
        saved = self._loaded()
        split, evaluation = self._evaluation()
        history = read_metrics(self._folder.file("metrics.csv")) if self._folder.file("metrics.csv").is_file() else []
        return ReportInputs(cfg=make_config(report_settings, base=saved.cfg), info=saved.info, model=saved.model,
                            test_split=split, evaluation=evaluation, history=history, summary=self.summary,
                            device=saved.device)

    def plot_curves(self) -> Figure:
        """Loss, accuracy and learning rate per epoch, for train, validation (if held out) and test."""
        history = read_metrics(self._folder.file("metrics.csv"))
        return plots.curves_figure(history, title=plots.curves_title(self.summary))

    def plot_misclassified(self, n: int = 20, order: str = "index") -> Figure:
        """The first `n` wrong test images in their real colours, titled with test index, true and
        predicted class and confidence."""
        return self.plot("misclassified", misclassified=n, misclassified_order=order)

    def plot_gradcam(self, n: int = 20, method: str | None = None, layer: str | None = None,
                     true_class: bool = False, order: str = "index") -> Figure:
        """Class activation maps over exactly the images of plot_misclassified(n, order), in the same
        order. `method`: gradcam, gradcam++, xgradcam, eigencam, layercam or scorecam (default: the
        run's --cam); `layer`: e.g. "layer3" for an 8x8 map (default: the model's last stage);
        `true_class`: also the map for the true class, beside the predicted one's."""
        from .explain.gradcam import target_layer
        from .explain.report import cam_layer_name

        settings = {"misclassified": n, "misclassified_order": order, "cam": method or self.config.cam,
                    "cam_layer": layer, "cam_true_class": true_class}
        target_layer(self.model, layer or cam_layer_name(self.config))
        return self.plot("gradcam", **settings)

    def plot_confusion(self) -> Figure:
        """The test confusion matrix, class names on both axes."""
        return self.plot("confusion")

    def plot_per_class(self) -> Figure:
        """Test accuracy per class, with the overall accuracy as a line."""
        return self.plot("per_class")

    # --- using the model -------------------------------------------------------------------------
    def evaluate(self, tta: bool | None = None, tta_shift: int | None = None) -> dict:
        """Measure the final model on the whole test split again; `tta`, `tta_shift` override the run's
        test-time augmentation (tta=False also drops the run's shift). Returns test_accuracy, test_loss,
        test_images, test_correct, summary_test_accuracy, device, precision, tta, tta_shift."""
        from dataclasses import replace

        from .config import make_config
        from .saved_run import evaluate_saved

        saved = self._loaded()
        overrides = {name: value for name, value in (("tta", tta), ("tta_shift", tta_shift)) if value is not None}
        if tta is False and tta_shift is None:
            overrides["tta_shift"] = 0
        cfg = make_config(overrides, base=saved.cfg)
        result = evaluate_saved(replace(saved, cfg=cfg))
        return {**result, "tta": cfg.tta, "tta_shift": cfg.tta_shift,
                "same_views_as_run": (cfg.tta, cfg.tta_shift) == (saved.cfg.tta, saved.cfg.tta_shift)}

    def predict(self, images, k: int = 3) -> pd.DataFrame:
        """The top-`k` classes with their probabilities, a row per image. `images`: file paths, PIL
        images, uint8 arrays or tensors ((H, W, 3) or (3, H, W), or a batch of them), of any size: the
        shorter side is resized to 32 and the centre cropped, as for an image folder."""
        from .explain.predict import as_batch, top_k

        saved = self._loaded()
        batch, names = as_batch(images)
        rows = []
        for name, top in zip(names, top_k(saved.model, saved.info, batch, k=k, device=saved.device)):
            row = {"image": name}
            for rank, (label, probability) in enumerate(top, 1):
                row.update({f"class_{rank}": label, f"probability_{rank}": probability})
            rows.append(row)
        return pd.DataFrame(rows)

    def report(self, **settings) -> Path:
        """Write the run's figures and report.html again and return the path of report.html. Keyword
        settings change what it shows: misclassified, misclassified_order, cam, cam_layer, cam_true_class."""
        from .saved_run import report_saved

        only_report_settings(settings)
        saved = read_saved_run(self.run_dir, data_dir=self._data_dir, device=self._device, overrides=settings)
        report_saved(saved)
        return self._folder.file("report.html")

    # --- how it shows ----------------------------------------------------------------------------
    def __repr__(self) -> str:
        s = self.summary
        val = f"; validation {s['val_accuracy']:.2%}" if s.get("val_accuracy") is not None else ""
        epochs = f"{s.get('epochs')} epoch" + ("" if s.get("epochs") == 1 else "s")
        return (f"Run({str(self.run_dir)!r})\n  {s.get('model')} on {s.get('data')}, {epochs}\n"
                f"  test accuracy {s['test_accuracy']:.2%} (final model, {s.get('test_images')} test images){val}\n"
                f"  trained in {duration(s.get('train_seconds', 0))} on {s.get('device')}, {s.get('precision')}")

    def _repr_html_(self) -> str:
        s = self.summary
        rows = "".join(f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(str(k))}</th>"
                       f"<td style='text-align:left'>{html.escape(str(v))}</td></tr>" for k, v in run_facts(s))
        png = base64.b64encode(plots.png_bytes(self.plot_curves(), dpi=60)).decode("ascii")
        return (f"<div><p style='font-size:1.2em;margin:.2em 0'>test accuracy <b>{s['test_accuracy']:.2%}</b>"
                f" <span style='color:#666'>(final model, whole test split of {s.get('test_images')} images)</span>"
                f"</p><table>{rows}</table><img alt='learning curves' style='max-width:100%' "
                f"src='data:image/png;base64,{png}'><p style='color:#666;font-size:.85em'>"
                f"{html.escape(str(self.run_dir))}</p></div>")
