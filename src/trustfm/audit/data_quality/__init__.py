"""The data quality audit: label issues, duplicates and train/test leakage, found from pretrained-encoder embeddings."""
