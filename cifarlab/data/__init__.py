"""Data: reading CIFAR or an image folder into memory, and serving shuffled batches on the device."""

from .datasets import Split, Splits, load_splits, stratified_subset
from .loader import DeviceLoader, to_model_input

__all__ = ["Split", "Splits", "load_splits", "stratified_subset", "DeviceLoader", "to_model_input"]
