"""The import path of the usage guide TD Generator was built from; tdauto's API, re-exported."""

from tdauto import *  # noqa: F403
from tdauto import __all__ as __all__
