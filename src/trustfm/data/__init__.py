"""Data stage: read, validate, split, tokenise and batch labelled text."""

from trustfm.data.io import read_table
from trustfm.data.prepare import PreparedData, file_sha256, prepare_data
from trustfm.data.validate import LabelledTexts, Rejection, validate_table

__all__ = [
    "LabelledTexts",
    "PreparedData",
    "Rejection",
    "file_sha256",
    "prepare_data",
    "read_table",
    "validate_table",
]
