"""cifarlab: train, evaluate and explain image classifiers on CIFAR-10/100 or an image folder.

    import cifarlab
    run = cifarlab.train(epochs=8, augment=["crop", "flip", "cutout"])   # every setting: help(cifarlab.train)
    run.test_accuracy, run.history                                    # the headline number, a row per epoch
    run.plot_misclassified(); run.plot_gradcam()                      # the same 20 images, in the same order
    run = cifarlab.load_run("runs/20260101-120000-resnet18")          # any finished run folder
"""

__version__ = "0.2.0"

from .api import compare, evaluate_run, load_run, lr_find, train  # noqa: E402
from .config import TrainConfig, make_config  # noqa: E402
from .models import create_model, model_names  # noqa: E402
from .run import Run  # noqa: E402

__all__ = ["train", "load_run", "compare", "lr_find", "evaluate_run", "Run", "TrainConfig", "make_config",
           "create_model", "model_names", "__version__"]
