"""Predictions for the user's own images: top-k classes, and a Grad-CAM overlay for each."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..data import to_model_input
from ..data.folder import read_image
from ..models import default_cam_layer
from ..rundir import write_atomic
from .gradcam import cam_maps, overlay


@torch.inference_mode()
def top_k(model, info: dict, images: torch.Tensor, k: int = 3, device="cpu") -> list[list[tuple[str, float]]]:
    inputs = to_model_input(images.to(device), info["mean"], info["std"], bool(info.get("channels_last")))
    probabilities = torch.softmax(model(inputs).float(), 1).cpu()
    values, classes = probabilities.topk(min(k, probabilities.shape[1]), dim=1)
    return [[(info["classes"][c], float(v)) for v, c in zip(vs, cs)] for vs, cs in zip(values, classes)]


def predict_files(model, info: dict, paths: list[Path], *, device="cpu", cam_dir: Path | None = None,
                  cam_method="gradcam", cam_layer: str | None = None) -> list[dict]:
    """Top-3 for each image file (any size: shorter side resized to 32, centre crop)."""
    images = torch.from_numpy(np.stack([read_image(Path(p)) for p in paths]))
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
