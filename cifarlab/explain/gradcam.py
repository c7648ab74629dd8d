"""Grad-CAM and its relatives through the grad-cam package (jacobgil/pytorch-grad-cam).

CAM_METHODS names each method by the grad-cam class that computes it; the package is imported only when
a map is made (it takes seconds), so the settings can list the methods without it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from ..registry import Registry

CAM_METHODS = Registry("CAM method")
CAM_METHODS.register("gradcam", "GradCAM", help="gradients averaged over the map")
CAM_METHODS.register("gradcam++", "GradCAMPlusPlus", help="second-order weights")
CAM_METHODS.register("xgradcam", "XGradCAM", help="gradients weighted by the activations")
CAM_METHODS.register("eigencam", "EigenCAM", help="the activations' first principal component, no gradients")
CAM_METHODS.register("layercam", "LayerCAM", help="positive gradients per position")
CAM_METHODS.register("scorecam", "ScoreCAM", help="the score of each activation map, no gradients; slow")


def cam_class(method: str):
    """The grad-cam class of a method."""
    import pytorch_grad_cam

    return getattr(pytorch_grad_cam, CAM_METHODS[method])


def target_layer(model: nn.Module, name: str) -> nn.Module:
    """The submodule called `name` (e.g. 'layer4', 'layer3', 'layer4.1.conv2')."""
    try:
        return model.get_submodule(name)
    except AttributeError:
        stages = [n for n, _ in model.named_children()]
        raise ConfigError("cam_layer", f"the model has no layer {name!r}; its top-level layers are "
                                       f"{', '.join(stages)} (sub-layers with dots, e.g. layer4.1)") from None


def cam_maps(model: nn.Module, inputs: torch.Tensor, classes: list[int], method: str = "gradcam",
             layer: str = "layer4", batch_size: int = 32) -> np.ndarray:
    """Heat maps (N, H, W) in [0, 1], one per input image, for the given class of each image.

    `inputs` are normalised model inputs. The model runs in fp32 and eval mode; its mode is restored.
    """
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    was_training = model.training
    model.eval()
    maps = []
    with cam_class(method)(model=model, target_layers=[target_layer(model, layer)]) as cam:
        if method == "scorecam":
            cam.batch_size = batch_size
        for start in range(0, len(inputs), batch_size):
            chunk = inputs[start:start + batch_size].float().contiguous()
            targets = [ClassifierOutputTarget(c) for c in classes[start:start + batch_size]]
            maps.append(cam(input_tensor=chunk, targets=targets))
    model.train(was_training)
    if not maps:
        return np.zeros((0, *inputs.shape[-2:]), dtype=np.float32)
    return np.clip(np.concatenate(maps).astype(np.float32), 0.0, 1.0)


def overlay(image_uint8_chw: np.ndarray, heat_map: np.ndarray, image_weight: float = 0.55) -> np.ndarray:
    """An RGB uint8 (H, W, 3) picture: the image with the heat map laid over it in the jet colours."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    rgb = image_uint8_chw.transpose(1, 2, 0).astype(np.float32) / 255.0
    return show_cam_on_image(rgb, heat_map, use_rgb=True, image_weight=image_weight)
