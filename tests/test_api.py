"""The Python API for notebooks: Run, load_run, compare, lr_find, and the settings as keywords."""

import csv
import inspect
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

import cifarlab
from cifarlab import Run, compare, load_run, lr_find, train
from cifarlab.cli import build_parser, main
from cifarlab.config import (FIELDS, LONG_BUDGET_DEFAULTS, LONG_BUDGET_EPOCHS, LR_FIND_SETTINGS, NOT_IN_LR_FIND,
                             default_of, value_text)
from cifarlab.errors import CifarlabError, ConfigError
from cifarlab.rundir import METRIC_COLUMNS
from helpers import write_cifar10

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished run (the Run that train returned) whose test split has 12 images it must get wrong."""
    root = tmp_path_factory.mktemp("api")
    data = write_cifar10(root / "data", mislabelled_test=12)
    run = train(model="compact", data_dir=str(data), epochs=3, batch_size=20, lr=0.1, precision="fp32",
                device="cpu", progress=False, val_split=20, out=str(root / "run"))
    return run


def panel_titles(figure) -> list[str]:
    return [ax.get_title() for ax in figure.axes if ax.get_title()]


def title_indices(figure) -> list[int]:
    return [int(re.match(r"#(\d+)", title).group(1)) for title in panel_titles(figure)]


def test_train_returns_a_run_with_the_folder_s_numbers(trained):
    assert isinstance(trained, Run)
    assert trained.test_accuracy == trained.summary["test_accuracy"]
    assert trained.classes[:2] == ["airplane", "automobile"] and len(trained.classes) == 10
    assert trained.config.epochs == 3 and trained.config.model == "compact"
    history = trained.history
    assert isinstance(history, pd.DataFrame) and list(history.columns) == list(METRIC_COLUMNS)
    assert history["epoch"].tolist() == [1, 2, 3]
    with open(trained.run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert history["val_acc"].tolist() == pytest.approx([float(r["val_acc"]) for r in rows])
    assert not trained.model.training and sum(p.numel() for p in trained.model.parameters()) == 97_146


def test_a_loaded_run_gives_the_same_numbers_and_the_same_images_in_the_same_order(trained):
    again = load_run(trained.run_dir)
    assert again.summary == trained.summary
    pd.testing.assert_frame_equal(again.history, trained.history)
    pd.testing.assert_frame_equal(again.confusion(), trained.confusion())
    pd.testing.assert_frame_equal(again.misclassified(12), trained.misclassified(12))
    assert panel_titles(again.plot_misclassified(12)) == panel_titles(trained.plot_misclassified(12))
    assert again.evaluate()["test_accuracy"] == trained.summary["test_accuracy"]


def test_tables_agree_with_each_other_and_with_the_summary(trained):
    confusion = trained.confusion()
    assert list(confusion.index) == trained.classes and list(confusion.columns) == trained.classes
    assert confusion.to_numpy().sum() == trained.summary["test_images"]
    assert np.trace(confusion.to_numpy()) == trained.summary["test_correct"]
    per_class = trained.per_class()
    assert per_class["correct"].tolist() == np.diag(confusion.to_numpy()).tolist()
    assert per_class["total"].sum() == trained.summary["test_images"]
    assert (per_class["accuracy"] == per_class["correct"] / per_class["total"]).all()


def test_misclassified_matches_the_report_s_csv_and_is_wrong(trained):
    wrong = trained.misclassified(20)
    assert list(wrong.columns) == ["test_index", "true", "predicted", "confidence"]
    assert (wrong["true"] != wrong["predicted"]).all() and wrong["test_index"].is_monotonic_increasing
    with open(trained.run_dir / "misclassified.csv") as f:  # the report of the run: 20 by test index
        written = list(csv.DictReader(f))
    assert wrong["test_index"].tolist() == [int(r["test_index"]) for r in written]
    by_confidence = trained.misclassified(5, order="confidence")
    assert by_confidence["confidence"].is_monotonic_decreasing
    assert by_confidence["confidence"].iloc[0] == wrong["confidence"].max()


def test_most_confused_are_the_largest_off_diagonal_counts(trained):
    confusion = trained.confusion().to_numpy().copy()
    top = trained.most_confused(3)
    assert list(top.columns) == ["true", "predicted", "count"] and len(top) <= 3
    assert (top["true"] != top["predicted"]).all() and top["count"].is_monotonic_decreasing
    np.fill_diagonal(confusion, 0)
    assert top["count"].iloc[0] == confusion.max()
    for _, row in top.iterrows():
        assert confusion[trained.classes.index(row["true"]), trained.classes.index(row["predicted"])] == row["count"]


def test_gradcam_shows_exactly_the_misclassified_images_in_their_order(trained):
    for order in ("index", "confidence"):
        shown = title_indices(trained.plot_misclassified(8, order=order))
        assert shown == trained.misclassified(8, order=order)["test_index"].tolist()
        assert title_indices(trained.plot_gradcam(8, order=order)) == shown
    both = title_indices(trained.plot_gradcam(4, method="gradcam++", layer="features.2", true_class=True))
    assert both == [i for i in title_indices(trained.plot_misclassified(4)) for _ in (0, 1)]


def test_every_figure_is_a_matplotlib_figure_that_jupyter_shows_as_png(trained, tmp_path):
    from matplotlib.figure import Figure

    figures = [trained.plot_curves(), trained.plot_misclassified(5), trained.plot_gradcam(5),
               trained.plot_confusion(), trained.plot_per_class()]
    for figure in figures:
        assert isinstance(figure, Figure) and figure._repr_png_().startswith(PNG)
    figures[0].savefig(tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes().startswith(PNG)
    assert len(figures[3].axes[0].texts) == 100  # a count in every cell of the 10x10 matrix


def test_bad_arguments_are_refused_with_the_setting_s_name(trained):
    with pytest.raises(ConfigError, match="misclassified: must be between 0 and 100"):
        trained.plot_misclassified(-1)
    with pytest.raises(ConfigError, match="misclassified_order: 'loss' is not one of"):
        trained.misclassified(5, order="loss")
    with pytest.raises(ConfigError, match="cam: 'gradcamm' is not one of"):
        trained.plot_gradcam(3, method="gradcamm")
    with pytest.raises(ConfigError, match="cam_layer: the model has no layer 'layer9'"):
        trained.plot_gradcam(3, layer="layer9")
    with pytest.raises(CifarlabError, match="epochs: the report takes only"):
        trained.report(epochs=3)
    with pytest.raises(CifarlabError, match="lr: the report takes only misclassified"):
        trained.plot("confusion", lr=0.1)


def test_the_card_and_the_text_show_the_headline(trained):
    accuracy = f"{trained.summary['test_accuracy']:.2%}"
    card = trained._repr_html_()
    assert accuracy in card and "final model" in card and "data:image/png;base64," in card
    assert "validation accuracy" in card and "compact (97,146 parameters)" in card
    text = repr(trained)
    assert accuracy in text and "compact on cifar10, 3 epochs" in text and len(text.splitlines()) <= 5


def test_model_summary_is_the_layer_table_and_train_does_not_print_it(tmp_path, cifar_dir, capsys):
    run = train(model="compact", data_dir=str(cifar_dir), epochs=1, batch_size=50, precision="fp32",
                device="cpu", progress=False, report=False, out=str(tmp_path / "quiet"))
    out = capsys.readouterr().out
    assert "Mult-Adds" not in out and "epoch 1/1" in out
    assert "Mult-Adds" in run.model_summary() and repr(run.model_summary()) == str(run.model_summary())
    assert "compact on cifar10, 1 epoch\n" in repr(run)


def test_predict_takes_paths_pil_images_arrays_and_tensors_of_any_size(trained, tmp_path):
    split, evaluation = trained._evaluation()  # the test split and the final model's outputs on it
    test_images = split.images[:4]
    table = trained.predict(test_images, k=3)
    assert table["class_1"].tolist() == [trained.classes[i] for i in evaluation.predictions[:4].tolist()]
    probabilities = table[["probability_1", "probability_2", "probability_3"]].to_numpy()
    assert (np.diff(probabilities, axis=1) <= 0).all() and (probabilities.sum(1) <= 1 + 1e-6).all()
    picture = test_images[0].numpy().transpose(1, 2, 0)  # (32, 32, 3)
    big = Image.fromarray(picture).resize((96, 96), Image.NEAREST)
    big.save(tmp_path / "big.png")
    forms = [str(tmp_path / "big.png"), big, np.asarray(big), torch.from_numpy(np.array(big)).permute(2, 0, 1),
             np.asarray(big).astype(np.float32) / 255]
    table = trained.predict(forms, k=2)
    assert table["image"].iloc[0] == str(tmp_path / "big.png") and len(table) == 5
    assert table["class_1"].nunique() == 1 and table["class_1"].iloc[0] == trained.classes[evaluation.predictions[0]]
    with pytest.raises(CifarlabError, match=r"images: cannot read an array of shape \(5,\)"):
        trained.predict(np.zeros(5))


def test_report_writes_the_page_and_takes_report_settings_only(trained):
    path = trained.report(misclassified=5)
    assert path == trained.run_dir / "report.html" and path.read_text().startswith("<!DOCTYPE html>")
    with open(trained.run_dir / "misclassified.csv") as f:
        assert len(list(csv.DictReader(f))) == 5
    trained.report(misclassified=0)
    assert not (trained.run_dir / "gradcam.png").exists()  # no stale figure under "the same images"
    trained.report()  # back to the run's own 20


def test_evaluate_overrides_test_time_augmentation(trained):
    plain, flipped = trained.evaluate(), trained.evaluate(tta=True)
    assert plain["same_views_as_run"] and not flipped["same_views_as_run"] and flipped["tta"]
    assert plain["test_images"] == flipped["test_images"] == trained.summary["test_images"]


def test_compare_takes_runs_and_folders(trained):
    comparison = compare([trained, trained.run_dir])
    table, figure = comparison
    assert table["test_accuracy"].tolist() == [trained.test_accuracy] * 2
    assert table["run"].tolist() == ["run", "run"] and "optimizer=muon" in table["recipe"].iloc[0]
    assert len(figure.axes[0].lines) == 2 and "<table" in comparison._repr_html_()


def test_lr_find_returns_a_suggestion_inside_the_tested_range(cifar_dir):
    result = lr_find(model="compact", data_dir=str(cifar_dir), lr_find_steps=15, batch_size=50, device="cpu",
                     precision="fp32", progress=False)
    assert min(result.lrs) <= result.suggestion <= max(result.lrs) and len(result.lrs) <= 15
    assert "suggested max lr" in repr(result) and result.plot()._repr_png_().startswith(PNG)


def test_every_setting_is_a_keyword_with_its_default_in_help():
    for function, names in ((train, FIELDS), (lr_find, LR_FIND_SETTINGS)):
        parameters = inspect.signature(function).parameters
        assert set(names) <= set(parameters)
        for name in names:
            assert parameters[name].kind == inspect.Parameter.KEYWORD_ONLY
            assert parameters[name].default == default_of(name)
            budget = (f" ({value_text(LONG_BUDGET_DEFAULTS[name])} from {LONG_BUDGET_EPOCHS} epochs on)"
                      if name in LONG_BUDGET_DEFAULTS else "")
            assert f"    {name} = {default_of(name)!r}{budget}: {FIELDS[name].metadata['help']}" in function.__doc__


def test_lr_find_shows_and_takes_only_what_the_range_test_uses(capsys):
    assert "epochs" not in inspect.signature(lr_find).parameters and "lr_find_steps" in LR_FIND_SETTINGS
    with pytest.raises(ConfigError, match="epochs: is not used by the LR range test"):
        lr_find(epochs=3)
    with pytest.raises(SystemExit):
        main(["lr-find", "--help"])
    shown = capsys.readouterr().out
    listed = set(re.findall(r"^  --([a-z0-9-]+)", shown, flags=re.M))
    assert {"lr-find-steps", "batch-size", "optimizer", "plot"} <= listed
    assert not listed & {name.replace("_", "-") for name in NOT_IN_LR_FIND}, listed


def test_help_of_train_names_every_flag_of_the_command_with_the_same_default():
    parameters = inspect.signature(train).parameters
    train_parser = build_parser()._subparsers._group_actions[0].choices["train"]
    flags = {a.dest: a for a in train_parser._actions if a.option_strings and a.dest in FIELDS}
    assert set(flags) == set(FIELDS)
    for name, action in flags.items():
        shown = re.search(r"\[default: ([^\]]*)\]", action.help)
        default = parameters[name].default
        if shown and not isinstance(default, bool):
            short, *long = shown.group(1).split("; ")
            assert short == value_text(default)
            assert long == ([f"{value_text(LONG_BUDGET_DEFAULTS[name])} from {LONG_BUDGET_EPOCHS} epochs on"]
                            if name in LONG_BUDGET_DEFAULTS else [])
        elif isinstance(default, bool):
            assert shown.group(1) == ("on" if default else "off")


def test_a_misspelt_keyword_is_refused_with_the_nearest_name():
    with pytest.raises(ConfigError, match="epoch: is not a setting; did you mean 'epochs'"):
        train(epoch=3)
    with pytest.raises(ConfigError, match="zzz: is not a setting; the settings are: data, data_dir"):
        train(zzz=1)


def test_tab_completion_in_ipython_lists_the_settings():
    pytest.importorskip("IPython")
    from IPython.core.completer import provisionalcompleter
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.user_ns["cifarlab"] = cifarlab
    for use_jedi in (True, False):
        shell.Completer.use_jedi = use_jedi
        for code, expected in (("cifarlab.train(epo", "epochs="), ("cifarlab.train(label_sm", "label_smoothing="),
                               ("cifarlab.lr_find(lr_find_st", "lr_find_steps=")):
            with provisionalcompleter():
                completions = [c.text for c in shell.Completer.completions(code, len(code))]
            assert expected in completions, (use_jedi, code, completions)


def rewrite_config(run_dir: Path, version: str, extra: dict | None = None) -> None:
    path = run_dir / "config.yaml"
    values = yaml.safe_load(path.read_text())
    values["environment"]["cifarlab"] = version
    path.write_text(yaml.safe_dump({**values, **(extra or {})}, sort_keys=False))


def test_a_run_from_an_older_version_loads_or_is_refused_naming_that_version(tmp_path, cifar_dir, capsys):
    out = tmp_path / "old"
    train(model="compact", data_dir=str(cifar_dir), epochs=1, batch_size=50, precision="fp32", device="cpu",
          progress=False, report=False, out=str(out))
    rewrite_config(out, "0.1.0")  # the same settings: it loads, and gives its own numbers
    assert load_run(out).evaluate()["test_accuracy"] == load_run(out).summary["test_accuracy"]
    rewrite_config(out, "0.0.7", {"mixup_alpha": 0.2})  # a setting this version does not know
    with pytest.raises(CifarlabError, match=r"written by cifarlab 0\.0\.7, whose settings cifarlab 0\.2\.0 "
                                            r"cannot read \(config: .*unknown setting 'mixup_alpha'"):
        load_run(out)
    capsys.readouterr()
    assert main(["evaluate", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "cifarlab 0.0.7" in err


def test_an_unfinished_run_is_refused_with_how_to_finish_it(tmp_path, cifar_dir, capsys):
    out = tmp_path / "half"
    train(model="compact", data_dir=str(cifar_dir), epochs=1, batch_size=50, precision="fp32", device="cpu",
          progress=False, report=False, out=str(out))
    recorded = json.loads((out / "summary.json").read_text())["test_accuracy"]
    (out / "model.safetensors").unlink()  # weights deleted to save room: comparing needs only the summary
    with pytest.raises(CifarlabError, match=r"no finished run \(no model.safetensors\)"):
        load_run(out)
    assert compare([out]).table["test_accuracy"].tolist() == [recorded]
    (out / "summary.json").unlink()  # as a run stopped before its end leaves it
    for opens in (load_run, lambda path: compare([path])):
        with pytest.raises(CifarlabError, match=f"no finished run.*cifarlab train --resume {out}"):
            opens(out)
        with pytest.raises(CifarlabError, match="no run folder at"):
            opens(tmp_path / "nothing")
    picture = tmp_path / "cat.png"
    Image.new("RGB", (40, 30), "orange").save(picture)
    refusals = {out: f"no finished run.*cifarlab train --resume {out}", tmp_path / "nothing": "no run folder at"}
    for folder, message in refusals.items():  # predict, from the command line, as load_run does
        capsys.readouterr()
        assert main(["predict", str(folder), str(picture), "--device", "cpu"]) == 2
        assert re.search(message, capsys.readouterr().err)
