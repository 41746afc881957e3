"""trustfm: fine-tune a pretrained foundation model, then audit and mitigate its risks.

Importing the package does no work and imports nothing heavy; each stage lives
in its own sub-package (``config``, ``data``, ``models``, ``train``, ``audit``,
``report``) and is imported where it is used.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
