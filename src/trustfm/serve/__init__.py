"""Serving-time pieces: what wraps a trained model's predictions in production."""
