"""Predictions for the user's own images: top-k classes, and a Grad-CAM overlay for each."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..data import to_model_input
from ..data.folder import read_image, to_rgb32
from ..errors import CifarlabError
from ..models import default_cam_layer
from ..rundir import write_atomic
from .gradcam import cam_maps, overlay


def as_rgb32(image) -> np.ndarray:
    """One image as uint8 (3, 32, 32), from a file path, a PIL image, or an array or tensor laid out
    (H, W), (H, W, 3|4) or (3, H, W), either uint8 or floats in [0, 1]; any size (shorter side to 32,
    centre crop, as for an image folder)."""
    if isinstance(image, (str, Path)):
        return read_image(Path(image))
    if isinstance(image, Image.Image):
        return to_rgb32(image)
    array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (3, 4):
        array = array.transpose(1, 2, 0)  # (C, H, W) to (H, W, C)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise CifarlabError(f"images: cannot read an array of shape {tuple(array.shape)} as an image "
                            "(expected (H, W), (H, W, 3) or (3, H, W))")
    if array.dtype != np.uint8:
        array = np.clip(np.round(array.astype(np.float64) * 255), 0, 255).astype(np.uint8)
    return to_rgb32(Image.fromarray(array))


def as_batch(images) -> tuple[torch.Tensor, list[str]]:
    """uint8 (N, 3, 32, 32) and a name per image (its path, or its position) from one image, a list of
    them, or a batch array/tensor (N, 3, H, W) or (N, H, W, 3)."""
    if isinstance(images, (torch.Tensor, np.ndarray)) and images.ndim == 4:
        images = list(images)
    elif not isinstance(images, (list, tuple)):
        images = [images]
    if not images:
        raise CifarlabError("images: give at least one image")
    names = [str(image) if isinstance(image, (str, Path)) else str(i) for i, image in enumerate(images)]
    return torch.from_numpy(np.stack([as_rgb32(image) for image in images])), names


@torch.inference_mode()
def top_k(model, info: dict, images: torch.Tensor, k: int = 3, device="cpu") -> list[list[tuple[str, float]]]:
    inputs = to_model_input(images.to(device), info["mean"], info["std"], bool(info.get("channels_last")))
    probabilities = torch.softmax(model(inputs).float(), 1).cpu()
    values, classes = probabilities.topk(min(k, probabilities.shape[1]), dim=1)
    return [[(info["classes"][c], float(v)) for v, c in zip(vs, cs)] for vs, cs in zip(values, classes)]


def predict_files(model, info: dict, paths: list[Path], *, device="cpu", cam_dir: Path | None = None,
                  cam_method="gradcam", cam_layer: str | None = None) -> list[dict]:
    """Top-3 for each image file (any size: shorter side resized to 32, centre crop)."""
    images, _ = as_batch([Path(p) for p in paths])
    results = [{"path": str(p), "top": top} for p, top in zip(paths, top_k(model, info, images, device=device))]
    if cam_dir is not None:
        cam_dir.mkdir(parents=True, exist_ok=True)
        layer = cam_layer or default_cam_layer(info["model"], info.get("model_args", {}).get("stages", 4))
        inputs = to_model_input(images.to(device), info["mean"], info["std"], channels_last=False)
        predicted = [info["classes"].index(r["top"][0][0]) for r in results]
        maps = cam_maps(model, inputs, predicted, cam_method, layer)
        for result, image, heat in zip(results, images.numpy(), maps):
            picture = np.concatenate([image.transpose(1, 2, 0), overlay(image, heat)], axis=1)
            big = Image.fromarray(picture).resize((picture.shape[1] * 8, picture.shape[0] * 8), Image.NEAREST)
            out = cam_dir / f"{Path(result['path']).stem}_cam.png"
            import io

            buffer = io.BytesIO()
            big.save(buffer, format="PNG")
            write_atomic(out, buffer.getvalue())
            result["cam"] = str(out)
    return results
