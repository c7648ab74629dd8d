"""The `cifarlab` command. Train flags are generated from TrainConfig, so each setting has one name."""

from __future__ import annotations

import argparse
import sys

from .config import FIELDS, LR_FIND_SETTINGS, REPORT_SETTINGS, default_of, default_text, field_kind
from .errors import CifarlabError


def add_setting_flags(parser: argparse.ArgumentParser, names=tuple(FIELDS)) -> None:
    """One flag per TrainConfig field; absent flags stay absent so the config file's values hold."""
    groups = {}
    for name in names:
        f = FIELDS[name]
        group_name = f.metadata.get("group", "training")
        group = groups.setdefault(group_name, parser.add_argument_group(f"{group_name} settings"))
        flag = "--" + name.replace("_", "-")
        help_text = f.metadata["help"]
        choices = f.metadata.get("choices")
        if choices and not all(f"{choice} (" in help_text for choice in map(str, choices)):
            help_text += f" ({'|'.join(map(str, choices))})"  # unless the help already describes each
        if default_of(name) not in (None, []) and field_kind(f) != "bool":
            help_text += f" [default: {default_text(name)}]"
        if field_kind(f) == "bool":
            group.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                               help=help_text + f" [default: {'on' if f.default else 'off'}]")
        else:
            metavar = "A,B" if field_kind(f) == "list" else name.upper()
            group.add_argument(flag, dest=name, default=argparse.SUPPRESS, metavar=metavar, help=help_text)


def given_settings(args: argparse.Namespace) -> dict:
    """The settings the user gave as flags (absent flags are absent, so a config file's values hold)."""
    return {name: getattr(args, name) for name in FIELDS if hasattr(args, name)}


def add_run_source(parser: argparse.ArgumentParser, device_default=None) -> None:
    """The arguments of every command that reads a saved run: its folder, where its data is, which device."""
    parser.add_argument("run_dir", help="a run folder written by `cifarlab train`")
    parser.add_argument("--data-dir", help="where the data is, if not where the run found it")
    parser.add_argument("--device", default=device_default, choices=FIELDS["device"].metadata["choices"])


def train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="YAML file of settings (flags override it)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue this run from its last checkpoint "
                        "(--epochs may be raised; settings that change what is learned are refused)")
    parser.add_argument("--print-config", action="store_true", help="print the settings the run would use, "
                        "as the YAML its config.yaml will hold, and exit without training")
    add_setting_flags(parser)


def lr_find_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="YAML file of settings (flags override it)")
    parser.add_argument("--plot", default="lr_find.png", help="where to write the plot [lr_find.png]")
    add_setting_flags(parser, LR_FIND_SETTINGS)


def evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_source(parser)
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                        help="flip test-time augmentation (default: as the run was trained)")
    parser.add_argument("--tta-shift", type=int, default=None, metavar="N",
                        help="with --tta, also the views moved N pixels (0: flip only; default: as the run)")


def report_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_source(parser)
    add_setting_flags(parser, REPORT_SETTINGS)


def predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="a run folder written by `cifarlab train`")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files of any size")
    parser.add_argument("--cam", metavar="OUT_DIR", help="also write a Grad-CAM overlay per image here")
    parser.add_argument("--cam-method", default="gradcam", choices=FIELDS["cam"].metadata["choices"])
    parser.add_argument("--cam-layer", help="layer for Grad-CAM (default: the model's last stage)")
    parser.add_argument("--device", default="auto", choices=FIELDS["device"].metadata["choices"])


def compare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    parser.add_argument("--out", default="compare.png", help="the figure of test-accuracy curves [compare.png]")


# Each subcommand: its help, its description, and the builder of its arguments.
SUBCOMMANDS = {
    "train": ("train a model and write a run folder", "Train a model. Flags override the values of --config FILE.",
              train_arguments),
    "lr-find": ("the learning-rate range test: a plot and a suggested max lr",
                "Train a throwaway copy of the model for --lr-find-steps batches with an exponentially growing "
                "lr; plot the smoothed loss.", lr_find_arguments),
    "evaluate": ("re-measure a saved run's test accuracy", None, evaluate_arguments),
    "report": ("write a saved run's figures and report.html again",
               "Recompute the report of a run folder from model.safetensors.", report_arguments),
    "predict": ("top-3 classes for your own images", None, predict_arguments),
    "compare": ("a table and one figure of several runs", None, compare_arguments),
    "models": ("list the models", None, lambda parser: None),
}


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="cifarlab", description="Train, evaluate and explain image "
                                     "classifiers on CIFAR-10/100 or an image folder.")
    parser.add_argument("--version", action="version", version=f"cifarlab {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, description, add_arguments) in SUBCOMMANDS.items():
        add_arguments(commands.add_parser(name, help=help_text, description=description))
    return parser


def command_train(args: argparse.Namespace) -> int:
    from .api import resolve_config, start_training
    from .config import config_to_yaml

    if args.print_config:
        if args.resume:
            raise CifarlabError("print_config: shows a new run's settings; a run's own are in RUN_DIR/config.yaml")
        print(config_to_yaml(resolve_config(args.config, **given_settings(args))), end="")
        return 0
    start_training(args.config, args.resume, given_settings(args), echo_summary=True)
    return 0


def command_lr_find(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .api import lr_find
    from .explain.plots import save_png

    result = lr_find(args.config, **given_settings(args))
    save_png(result.plot(), Path(args.plot))
    end = "stopped when the loss diverged" if result.diverged else "reached the largest lr"
    print(f"LR range test over {len(result.lrs)} batches ({end}): suggested max lr for onecycle "
          f"{result.suggestion:.4g}; plot {args.plot}")
    return 0


def command_evaluate(args: argparse.Namespace) -> int:
    from .api import evaluate_run

    result = evaluate_run(args.run_dir, data_dir=args.data_dir, device=args.device, tta=args.tta,
                          tta_shift=args.tta_shift)
    print(f"test accuracy {result['test_accuracy']:.2%} ({result['test_correct']}/{result['test_images']} "
          f"test images), loss {result['test_loss']:.4f}; {result['device']}, {result['precision']}")
    recorded = result["summary_test_accuracy"]
    if not result["same_views_as_run"]:
        views = f"on, shift {result['tta_shift']}" if result["tta_shift"] else "on" if result["tta"] else "off"
        print(f"(tta {views}, unlike the run: summary.json recorded {recorded:.2%})")
    elif recorded is not None:
        verdict = "the same" if recorded == result["test_accuracy"] else "DIFFERENT"
        print(f"summary.json recorded {recorded:.2%}: {verdict}")
    return 0


def command_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .saved_run import read_saved_run, report_saved

    overrides = {name: getattr(args, name) for name in REPORT_SETTINGS if hasattr(args, name)}
    run = read_saved_run(Path(args.run_dir), data_dir=args.data_dir, device=args.device, overrides=overrides)
    report_saved(run)
    print(f"wrote the report of {run.folder.path}: {run.folder.file('report.html')}")
    return 0


def command_predict(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .explain.predict import predict_files
    from .runtime import resolve_device
    from .saved_run import finished_run
    from .weights import load_model

    folder, _, _ = finished_run(Path(args.run_dir))  # a stopped run is refused with how to finish it
    device = resolve_device(args.device)
    model, info = load_model(folder.file("model.safetensors"), device=device)
    results = predict_files(model, info, [Path(p) for p in args.images], device=device,
                            cam_dir=Path(args.cam) if args.cam else None, cam_method=args.cam_method,
                            cam_layer=args.cam_layer)
    for result in results:
        top = "  ".join(f"{name} {p:.1%}" for name, p in result["top"])
        print(f"{result['path']}: {top}" + (f"  (Grad-CAM: {result['cam']})" if "cam" in result else ""))
    return 0


def command_compare(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .explain.compare import compare_runs, table_text
    from .explain.plots import save_png

    table, figure = compare_runs(args.run_dirs)
    save_png(figure, Path(args.out))
    print(f"{table_text(table)}\n(test-accuracy curves: {args.out})")
    return 0


def command_models(args: argparse.Namespace) -> int:
    from .models import MODELS, count_parameters, create_model

    for name in MODELS:
        print(f"{name:<12} {count_parameters(create_model(name)):>12,} parameters (10 classes)  {MODELS.help[name]}")
    return 0


COMMANDS = {"train": command_train, "lr-find": command_lr_find, "evaluate": command_evaluate, "report": command_report,
            "predict": command_predict, "compare": command_compare, "models": command_models}


def main(argv: list[str] | None = None) -> int:
    from . import distributed

    args = build_parser().parse_args(argv)
    context = distributed.from_environment()
    who = f"cifarlab {args.command}" + (f" (rank {context.rank})" if context.enabled else "")
    finished = False
    try:
        code = COMMANDS[args.command](args)
        finished = True
        return code
    except CifarlabError as exc:
        print(f"{who}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{who}: interrupted", file=sys.stderr)
        return 130
    except RuntimeError as exc:
        if not context.enabled:
            raise
        # Under torchrun a collective fails when another process has died: say so in one line.
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"{who}: error: stopped because another process of the job failed or left ({first[:200]})",
              file=sys.stderr)
        return 1
    finally:
        distributed.leave(finished)


if __name__ == "__main__":
    sys.exit(main())
