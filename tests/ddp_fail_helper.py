"""Launched by torchrun: rank 1 fails at its second training step; the job must end, not hang."""

import os
import sys

import cifarlab.training as training
from cifarlab.cli import main

real = training.make_train_step


def failing(*args, **kwargs):
    step = real(*args, **kwargs)
    calls = {"n": 0}

    def wrapped(*a):
        calls["n"] += 1
        if os.environ.get("RANK") == "1" and calls["n"] == 2:
            raise ValueError("injected failure on rank 1")
        return step(*a)

    return wrapped


training.make_train_step = failing
sys.exit(main(sys.argv[1:]))
