"""Optional TensorBoard logging of the per-epoch metrics and the report's pictures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import ConfigError


def check_available() -> None:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise ConfigError("tensorboard", "needs the tensorboard package: pip install tensorboard") from None


class TensorBoardLog:
    """Scalars under loss/<split>, accuracy/<split> and lr; images under report/<figure>."""

    def __init__(self, log_dir: Path):
        check_available()
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(log_dir))

    def epoch(self, row: dict) -> None:
        step = int(row["epoch"])
        for split in ("train", "val", "test"):
            if row.get(f"{split}_loss") is not None:
                self.writer.add_scalar(f"loss/{split}", row[f"{split}_loss"], step)
                self.writer.add_scalar(f"accuracy/{split}", row[f"{split}_acc"], step)
        self.writer.add_scalar("lr", row["lr"], step)
        self.writer.add_scalar("train_images_per_sec", row["train_images_per_sec"], step)
        self.writer.flush()

    def figures(self, folder: Path, step: int) -> None:
        """The report's figures (those of rundir's file table that the run folder holds)."""
        from .report import report_figures

        for name, _ in report_figures():
            path = Path(folder) / name
            if path.is_file():
                picture = np.asarray(Image.open(path).convert("RGB"))
                self.writer.add_image(f"report/{Path(name).stem}", picture, step, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
