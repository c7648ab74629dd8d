"""The `cifarlab` command. Train flags are generated from TrainConfig, so each setting has one name."""

from __future__ import annotations

import argparse
import sys

from .config import FIELDS, field_kind
from .errors import CifarlabError


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field; absent flags stay absent so the config file's values hold."""
    groups = {}
    for name, f in FIELDS.items():
        group_name = f.metadata.get("group", "training")
        group = groups.setdefault(group_name, parser.add_argument_group(f"{group_name} settings"))
        flag = "--" + name.replace("_", "-")
        help_text = f.metadata["help"]
        choices = f.metadata.get("choices")
        if choices:
            help_text += f" ({'|'.join(choices)})"
        if f.default is not None and field_kind(f) != "bool":
            default = ",".join(f.default) if isinstance(f.default, list) else f.default
            help_text += f" [default: {default}]"
        if field_kind(f) == "bool":
            group.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                               help=help_text + f" [default: {'on' if f.default else 'off'}]")
        else:
            metavar = "A,B" if field_kind(f) == "list" else name.upper()
            group.add_argument(flag, dest=name, default=argparse.SUPPRESS, metavar=metavar, help=help_text)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="cifarlab", description="Train, evaluate and explain image "
                                     "classifiers on CIFAR-10/100 or an image folder.")
    parser.add_argument("--version", action="version", version=f"cifarlab {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train a model and write a run folder",
                                description="Train a model. Flags override the values of --config FILE.")
    train.add_argument("--config", metavar="FILE", help="YAML file of settings (flags override it)")
    add_setting_flags(train)

    evaluate = commands.add_parser("evaluate", help="re-measure a saved run's test accuracy")
    evaluate.add_argument("run_dir", help="a run folder written by `cifarlab train`")
    evaluate.add_argument("--data-dir", help="where the data is, if not where the run found it")
    evaluate.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"))

    commands.add_parser("models", help="list the models")
    return parser


def command_train(args: argparse.Namespace) -> int:
    from .api import resolve_config
    from .train import run_training

    settings = {name: getattr(args, name) for name in FIELDS if hasattr(args, name)}
    cfg = resolve_config(args.config, **settings)
    run_training(cfg)
    return 0


def command_evaluate(args: argparse.Namespace) -> int:
    from .api import evaluate_run

    result = evaluate_run(args.run_dir, data_dir=args.data_dir, device=args.device)
    print(f"test accuracy {result['test_accuracy']:.2%} ({result['test_correct']}/{result['test_images']} "
          f"test images), loss {result['test_loss']:.4f}; {result['device']}, {result['precision']}")
    recorded = result["summary_test_accuracy"]
    if recorded is not None:
        verdict = "the same" if recorded == result["test_accuracy"] else "DIFFERENT"
        print(f"summary.json recorded {recorded:.2%}: {verdict}")
    return 0


def command_models(args: argparse.Namespace) -> int:
    from .models import count_parameters, create_model, model_names

    for name in model_names():
        print(f"{name:<12} {count_parameters(create_model(name)):>12,} parameters (10 classes)")
    return 0


COMMANDS = {"train": command_train, "evaluate": command_evaluate, "models": command_models}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except CifarlabError as exc:
        print(f"cifarlab {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"cifarlab {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
