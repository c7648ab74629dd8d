"""The run folder: its table of files, --overwrite's clearing, the one atomic writer."""

import pytest

from cifarlab.explain.report import report_figures
from cifarlab.rundir import RUN_FILES, clear_run, holds_run


@pytest.mark.parametrize("data", ["new text", b"new bytes"])
def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path, monkeypatch, data):
    import errno
    import os

    from cifarlab.rundir import write_atomic

    path = tmp_path / "summary.json"
    path.write_text("old")

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        write_atomic(path, data)
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_every_report_figure_is_a_run_file_that_overwrite_clears(tmp_path):
    for name in RUN_FILES:
        (tmp_path / name).write_text("old")
    (tmp_path / "notes.txt").write_text("mine")
    clear_run(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    assert {name for name, _ in report_figures()} <= set(RUN_FILES)


def test_a_folder_holds_a_run_once_any_file_that_marks_one_is_there(tmp_path):
    assert not holds_run(tmp_path)
    (tmp_path / "report.html").write_text("a report alone is no run")
    assert not holds_run(tmp_path)
    markers = [name for name in RUN_FILES if RUN_FILES[name].marks_a_run]
    assert "checkpoint.safetensors" in markers and "config.yaml" in markers
    (tmp_path / "checkpoint.safetensors").write_text("x")
    assert holds_run(tmp_path)
