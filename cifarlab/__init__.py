"""cifarlab: train, evaluate and explain image classifiers on CIFAR-10/100 or an image folder.

    from cifarlab import train
    result = train(model="resnet18", epochs=8, augment=["crop", "flip", "cutout"], scheduler="onecycle")
    result.summary["test_accuracy"], result.history
"""

__version__ = "0.1.0"

from .api import evaluate_run, train  # noqa: E402
from .config import TrainConfig, make_config  # noqa: E402
from .models import create_model, model_names  # noqa: E402

__all__ = ["train", "evaluate_run", "TrainConfig", "make_config", "create_model", "model_names", "__version__"]
