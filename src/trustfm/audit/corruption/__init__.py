"""Corruption robustness of image models (ImageNet-C style)."""
