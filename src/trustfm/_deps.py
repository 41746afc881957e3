"""Optional heavy dependencies, imported where they are used, with an error that says how to get them."""

from __future__ import annotations

import importlib

from trustfm.errors import ConfigError


def optional_import(module: str, extra: str):
    """Import ``module`` or raise a ConfigError naming the pip extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"this needs the optional package '{module.split('.')[0]}': "
                          f"pip install 'trustfm[{extra}]'") from None
