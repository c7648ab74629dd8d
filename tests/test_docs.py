"""The README and docs/: short, about the project alone, and every command and code block runs as written."""

import re
import shlex
from pathlib import Path

import pytest

import cifarlab
from cifarlab.cli import build_parser
from helpers import write_cifar10

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PROSE = PAGES + sorted((ROOT / "benchmarks").glob("*.md"))


def blocks(page: Path, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", page.read_text(encoding="utf-8"), flags=re.M | re.S)


def test_the_readme_is_a_short_guide():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text) <= 12_000, len(text)
    first = blocks(ROOT / "README.md", "bash")[0].splitlines()
    assert "python3 -m venv .venv" in first[0] and first[1].startswith("bash scripts/test.sh")


@pytest.mark.parametrize("page", PROSE, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_pages_speak_of_the_project_alone(page):
    text = page.read_text(encoding="utf-8")
    for word in (r"\bissues? \d", r"\bsessions?\b", r"DEVELOPERS\.md", r"\.\./shared"):
        assert not re.search(word, text, flags=re.I), (word, page.name)


@pytest.mark.parametrize("page", PROSE, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_lead_to_files(page):
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
        assert (page.parent / target).exists(), f"{page.name} links to {target}, which is not there"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_cifarlab_command_in_the_docs_parses(page):
    parser = build_parser()
    for block in blocks(page, "bash"):
        for line in block.splitlines():
            words = shlex.split(line.split("  #")[0].replace("\\", ""))
            if words[:1] != ["cifarlab"] or "--help" in words:
                continue
            parser.parse_args(words[1:])  # argparse exits (failing the test) on a flag that does not exist


@pytest.mark.parametrize("page", [p for p in PAGES if blocks(p, "python")], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_python_blocks_run_on_tiny_data(page, tmp_path, monkeypatch):
    """The page's Python blocks, in order, in one namespace, in a folder whose ./data is a tiny CIFAR-10;
    training is cut to one epoch on the CPU (the blocks are written for the full data)."""
    write_cifar10(tmp_path / "data", mislabelled_test=30)
    monkeypatch.chdir(tmp_path)
    real_train, real_lr_find = cifarlab.train, cifarlab.lr_find
    short = dict(epochs=1, device="cpu", precision="fp32", progress=False, batch_size=50)
    monkeypatch.setattr(cifarlab, "train", lambda config=None, **s: real_train(
        config, **{**s, **short, "val_split": min(s.get("val_split", 0), 20)}))
    monkeypatch.setattr(cifarlab, "lr_find", lambda config=None, **s: real_lr_find(
        config, **{**s, **{k: v for k, v in short.items() if k != "epochs"}, "lr_find_steps": 10, "batch_size": 8}))
    namespace = {}
    for block in blocks(page, "python"):
        exec(compile(block, f"{page.name} block", "exec"), namespace)
    assert isinstance(namespace.get("run"), cifarlab.Run)


def test_the_assignments_page_has_a_row_per_config_with_the_numbers_of_its_record():
    """A measured row cites the JSON benchmarks/run_result.py wrote; its numbers must be that JSON's."""
    import json

    from cifarlab.api import resolve_config
    from cifarlab.config import RECIPE_SETTINGS

    page = ROOT / "docs" / "assignments.md"
    rows = {m[1]: line for line in page.read_text(encoding="utf-8").splitlines()
            if (m := re.match(r"\| `(\w+)\.yaml` \|", line))}
    assert set(rows) == {path.stem for path in (ROOT / "configs").glob("*.yaml")}
    for name, line in rows.items():
        for record in re.findall(r"\]\(([^)]+\.json)\)", line):
            result = json.loads((page.parent / record).read_text())
            stated = resolve_config(ROOT / "configs" / f"{name}.yaml")
            recorded = result["summary"]["config"]
            assert {key: recorded[key] for key in RECIPE_SETTINGS} == \
                {key: getattr(stated, key) for key in RECIPE_SETTINGS}, f"{record} is not a run of {name}"
            cells = [cell.strip() for cell in line.split("|")]
            assert cells[4] == f"{result['summary']['test_accuracy']:.2%}", name
            assert cells[5] == f"{result['test_accuracy_tta']:.2%}", name
            assert cells[6].startswith(f"{result['best_epoch_test_accuracy_chosen_on_test']:.2%} at epoch "
                                       f"{result['best_epoch']}"), name


def test_the_example_notebook_trains_the_recipe_of_its_config():
    """The notebook spells the LayerNorm assignment's settings out; unspelled ones follow the defaults, which
    move as the default recipe improves. Both must stay the recipe of configs/resnet18_layernorm_3stage_plateau.yaml."""
    import ast

    import nbformat

    from cifarlab.api import resolve_config
    from cifarlab.config import RECIPE_SETTINGS

    notebook_cells = nbformat.read(ROOT / "examples" / "layernorm_assignment.ipynb", as_version=4).cells
    cells = [cell.source for cell in notebook_cells if cell.cell_type == "code"]
    parameters = {}
    exec(cells[0].replace("import cifarlab", ""), parameters)
    call = next(node for node in ast.walk(ast.parse(next(c for c in cells if "cifarlab.train(" in c)))
                if isinstance(node, ast.Call) and ast.unparse(node.func) == "cifarlab.train")
    settings = {kw.arg: eval(compile(ast.Expression(kw.value), "notebook", "eval"), parameters)
                for kw in call.keywords if kw.arg is not None}
    notebook = resolve_config(None, **settings)
    config = resolve_config(ROOT / "configs" / "resnet18_layernorm_3stage_plateau.yaml")
    differ = {key: (getattr(notebook, key), getattr(config, key)) for key in RECIPE_SETTINGS
              if getattr(notebook, key) != getattr(config, key)}
    assert not differ, f"notebook vs config: {differ}"
