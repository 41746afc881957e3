"""White-box FGSM and PGD attacks on image models."""
