"""Run `cifarlab.train` in this process and send ourselves a signal at a given training step.

usage: python signal_helper.py SETTINGS_JSON SIGNAL GLOBAL_STEP [CHECKPOINT_KILL]
A global step counts training steps from 1 across epochs. With CHECKPOINT_KILL=1 the process instead
kills itself halfway through writing its second checkpoint.
"""

import json
import os
import signal
import sys

import cifarlab.rundir as rundir_module
import cifarlab.training as train_module
from cifarlab import train
from cifarlab.errors import CifarlabError

settings = json.loads(sys.argv[1])
signum = getattr(signal, sys.argv[2])
at_step = int(sys.argv[3])
kill_in_checkpoint = len(sys.argv) > 4 and sys.argv[4] == "1"

real_make_step = train_module.make_train_step
count = {"steps": 0, "saves": 0}


def make_step(*args, **kwargs):
    step = real_make_step(*args, **kwargs)

    def counted(*a):
        result = step(*a)
        count["steps"] += 1
        if count["steps"] == at_step and not kill_in_checkpoint:
            os.kill(os.getpid(), signum)
        return result

    return counted


real_open = open


def half_writing_open(path, mode="r", *args, **kwargs):
    handle = real_open(path, mode, *args, **kwargs)
    if "checkpoint" in str(path) and "w" in mode:
        count["saves"] += 1
        if count["saves"] == 2:
            real_write = handle.write

            def write(data):
                real_write(data[: len(data) // 2])
                handle.flush()
                os.kill(os.getpid(), signal.SIGKILL)

            handle.write = write
    return handle


train_module.make_train_step = make_step
if kill_in_checkpoint:
    rundir_module.open = half_writing_open  # every file is written by rundir.write_atomic
try:
    train(**settings)
except CifarlabError as exc:  # what the command line does
    print(f"cifarlab train: error: {exc}", file=sys.stderr)
    sys.exit(exc.exit_code)
