"""Launched by torchrun: records which ranks run the LR range test, as files in $LR_FIND_MARKS."""

import os
import sys
from pathlib import Path

import cifarlab.training as training
from cifarlab.cli import main

real = training.find_lr


def recording(*args, **kwargs):
    Path(os.environ["LR_FIND_MARKS"], f"rank-{os.environ['RANK']}").touch()
    return real(*args, **kwargs)


training.find_lr = recording
sys.exit(main(sys.argv[1:]))
