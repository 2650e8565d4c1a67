"""Tools: the options (config) and the data file loader (convert)."""

from .config import config  # noqa: F401
