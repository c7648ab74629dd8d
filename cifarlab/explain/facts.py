"""What a run was, in words: the rows of the report's table and of a notebook's card."""

from __future__ import annotations


def duration(seconds: float) -> str:
    """'45 s', '12 min 5 s', '3 h 20 min'."""
    seconds = round(seconds or 0)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def run_facts(summary: dict) -> list[list]:
    """What a run was, as (name, value) rows: the report's table and a notebook's card."""
    facts = [["model", f"{summary.get('model')} ({summary.get('params', 0):,} parameters)"],
             ["data", f"{summary.get('data')}: {summary.get('train_images')} train, {summary.get('val_images', 0)} "
                      f"validation, {summary.get('test_images')} test images"],
             ["epochs", summary.get("epochs")], ["train time", duration(summary.get("train_seconds", 0))],
             ["device, precision", f"{summary.get('device')}, {summary.get('precision')}"]]
    if summary.get("val_accuracy") is not None:
        facts.append(["validation accuracy", f"{summary['val_accuracy']:.2%}"])
    return facts
