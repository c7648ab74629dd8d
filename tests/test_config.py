import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from cifarlab.config import FIELDS, TrainConfig, config_to_yaml, make_config, read_config_file
from cifarlab.errors import CifarlabError, ConfigError


def test_defaults_are_valid_and_read_the_data_dir_from_the_environment(monkeypatch):
    monkeypatch.setenv("CIFARLAB_DATA", "/somewhere/else")
    cfg = make_config()
    assert cfg.model == "resnet18" and cfg.data == "cifar10" and cfg.data_dir == "/somewhere/else"
    monkeypatch.delenv("CIFARLAB_DATA")
    assert make_config().data_dir == "./data"


@pytest.mark.parametrize("name, value, allowed", [
    ("model", "resnet1000", "resnet18"),
    ("augment", "crop,blur", "cutout"),
    ("lr", 0, "> 0"),
    ("lr", -0.1, "> 0"),
    ("lr", "fast", "number"),
    ("batch_size", 0, ">= 1"),
    ("epochs", 0, ">= 1"),
    ("epochs", 2.5, "whole number"),
    ("optimizer", "lbfgs", "sgd"),
    ("scheduler", "cyclic", "onecycle"),
    ("onecycle_anneal", "cosine", "linear"),
    ("norm_lr_scale", 0, "> 0"),
    ("muon_lr_scale", -1, "> 0"),
    ("muon_momentum", 1, "between 0 and 0.99"),
    ("ema_decay", 1, "< 1"),
    ("ema_decay", -0.1, ">= 0"),
    ("lookahead_every", -1, ">= 0"),
    ("precision", "fp8", "bf16"),
    ("device", "tpu", "cuda"),
    ("data", "/no/such/folder", "cifar10"),
    ("nesterov", "maybe", "true or false"),
    ("label_smoothing", 1.5, "between"),
    ("lr", float("nan"), "finite"),
    ("tta_shift", 9, "between 0 and 8"),
    ("tta_shift", 1, "give --tta too"),
])
def test_a_wrong_value_names_the_setting_and_what_is_allowed(name, value, allowed):
    with pytest.raises(ConfigError) as error:
        make_config({name: value})
    assert str(error.value).startswith(f"{name}:")
    assert allowed in str(error.value)


def test_an_unknown_setting_is_refused():
    with pytest.raises(ConfigError, match="is not a setting"):
        make_config({"learning_rate": 0.1})


def test_values_from_text_are_coerced_to_their_types():
    cfg = make_config({"lr": "0.05", "epochs": "3", "augment": "crop, Flip", "nesterov": "no",
                       "limit_train": "none"})
    assert cfg.lr == 0.05 and cfg.epochs == 3 and cfg.augment == ["crop", "flip"]
    assert cfg.nesterov is False and cfg.limit_train is None
    assert make_config({"augment": "none"}).augment == []


def test_yaml_round_trip_gives_the_same_settings(tmp_path):
    cfg = make_config({"lr": 0.3, "augment": ["crop", "cutout"], "epochs": 3, "out": "somewhere"})
    path = tmp_path / "config.yaml"
    path.write_text(config_to_yaml(cfg, {"device": "cpu", "torch": "2.x"}))
    again = make_config(read_config_file(path))
    assert again.to_dict() == {**cfg.to_dict(), "out": None}  # out left empty: a repeat gets a new folder


def test_config_file_errors_are_clear(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: [0.1\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        read_config_file(bad)
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        read_config_file(bad)
    bad.write_text("lr: 0.1\nwarmup: 3\n")
    with pytest.raises(ConfigError, match="unknown setting 'warmup'"):
        read_config_file(bad)
    with pytest.raises(ConfigError, match="no such file"):
        read_config_file(tmp_path / "missing.yaml")


def test_every_setting_has_help_text():
    assert all(f.metadata.get("help") for f in FIELDS.values())


def test_train_help_shows_each_default_as_a_user_would_type_it():
    from cifarlab.cli import build_parser

    train = build_parser()._subparsers._group_actions[0].choices["train"]
    helps = {a.dest: " ".join(a.help.split()) for a in train._actions if a.dest in FIELDS}
    defaults = TrainConfig()
    assert "[default: crop,flip" in helps["augment"] and defaults.augment == ["crop", "flip"]
    assert f"[default: {defaults.lr}]" in helps["lr"]
    assert not any("MISSING" in text or "object at 0x" in text for text in helps.values())


simple_values = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                          st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
                          st.lists(st.text(max_size=8), max_size=4))


@given(st.dictionaries(st.sampled_from(sorted(FIELDS)), simple_values, max_size=4))
@settings(max_examples=200, deadline=None)
def test_any_values_give_a_config_or_a_config_error(values):
    try:
        cfg = make_config(values)
    except CifarlabError:
        return
    assert isinstance(cfg, TrainConfig)
    assert cfg.lr > 0 and cfg.epochs >= 1 and cfg.batch_size >= 1


@given(st.text(max_size=200))
@settings(max_examples=200, deadline=None)
def test_any_yaml_text_gives_settings_or_a_config_error(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("cfg") / "c.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        values = read_config_file(path)
    except ConfigError:
        return
    assert set(values) <= set(FIELDS)
    assert yaml.safe_load(text) in (None, values) or isinstance(yaml.safe_load(text), dict)


@given(st.integers(1, 400))
@settings(max_examples=60, deadline=None)
def test_the_recipe_follows_the_number_of_epochs_and_given_values_hold(epochs):
    from cifarlab.config import LONG_BUDGET_DEFAULTS, LONG_BUDGET_EPOCHS, default_of

    cfg = make_config({"epochs": epochs})
    long_budget = epochs >= LONG_BUDGET_EPOCHS
    for name, value in LONG_BUDGET_DEFAULTS.items():
        assert getattr(cfg, name) == (value if long_budget else default_of(name)), name
    assert make_config({"epochs": epochs, "crop_padding": 3}).crop_padding == 3
    assert make_config({"epochs": str(epochs), "augment": "crop"}).augment == ["crop"]
    assert set(LONG_BUDGET_DEFAULTS) <= set(FIELDS)


def test_the_long_budget_recipe_differs_from_the_short_one_and_lists_are_not_shared():
    from cifarlab.config import LONG_BUDGET_DEFAULTS, LONG_BUDGET_EPOCHS, default_of

    assert all(default_of(name) != value for name, value in LONG_BUDGET_DEFAULTS.items())
    first = make_config({"epochs": LONG_BUDGET_EPOCHS})
    first.augment.append("rotate")
    assert make_config({"epochs": LONG_BUDGET_EPOCHS}).augment == LONG_BUDGET_DEFAULTS["augment"]
    assert "rotate" not in LONG_BUDGET_DEFAULTS["augment"]


def test_a_given_base_config_keeps_its_recipe_when_only_the_epochs_change():
    from cifarlab.config import LONG_BUDGET_EPOCHS

    short = make_config({"epochs": 4})
    longer = make_config({"epochs": 2 * LONG_BUDGET_EPOCHS}, base=short)
    assert longer.epochs == 2 * LONG_BUDGET_EPOCHS
    assert {**longer.to_dict(), "epochs": 4} == short.to_dict()


def test_help_and_print_config_show_both_budgets(capsys):
    from cifarlab.api import train
    from cifarlab.cli import build_parser, main
    from cifarlab.config import LONG_BUDGET_DEFAULTS, LONG_BUDGET_EPOCHS, default_of

    parser = build_parser()._subparsers._group_actions[0].choices["train"]
    helps = {a.dest: " ".join(a.help.split()) for a in parser._actions if a.dest in FIELDS}
    short, long = default_of("crop_padding"), LONG_BUDGET_DEFAULTS["crop_padding"]
    assert f"[default: {short}; {long} from {LONG_BUDGET_EPOCHS} epochs on]" in helps["crop_padding"]
    assert f"crop_padding = {short} ({long} from {LONG_BUDGET_EPOCHS} epochs on)" in train.__doc__
    assert f"[default: crop,flip; crop,flip,cutout from {LONG_BUDGET_EPOCHS} epochs on]" in helps["augment"]
    assert main(["train", "--epochs", str(2 * LONG_BUDGET_EPOCHS), "--print-config"]) in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert {name: printed[name] for name in LONG_BUDGET_DEFAULTS} == LONG_BUDGET_DEFAULTS
