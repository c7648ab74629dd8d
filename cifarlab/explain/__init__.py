"""Explaining a trained model: per-class numbers, misclassified images, Grad-CAM, figures, the report."""
