"""Pixel attributions of image models (Captum) with a deletion faithfulness check."""
