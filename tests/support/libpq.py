"""libpq's own conninfo parser (``PQconninfoParse``) through ctypes, to check tdauto's.

``None`` from ``libpq()`` when the library is not installed (it comes with the PostgreSQL
client programs, ``libpq5`` on Debian)."""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable
from typing import Any

Parsed = dict[str, str] | None  # None: libpq refused the string


class _Option(ctypes.Structure):
    _fields_ = [
        ("keyword", ctypes.c_char_p),
        ("envvar", ctypes.c_char_p),
        ("compiled", ctypes.c_char_p),
        ("val", ctypes.c_char_p),
        ("label", ctypes.c_char_p),
        ("dispchar", ctypes.c_char_p),
        ("dispsize", ctypes.c_int),
    ]


def libpq() -> Callable[[str], Parsed] | None:
    """A function giving the options libpq parses from a conninfo (only those given), or
    None for a string libpq refuses; None when libpq is missing."""
    name = ctypes.util.find_library("pq")
    if name is None:
        return None
    lib: Any = ctypes.CDLL(name)
    lib.PQconninfoParse.restype = ctypes.POINTER(_Option)
    lib.PQconninfoParse.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p)]
    lib.PQconninfoFree.argtypes = [ctypes.POINTER(_Option)]
    lib.PQfreemem.argtypes = [ctypes.c_void_p]

    def parse(text: str) -> Parsed:
        error = ctypes.c_char_p()
        options = lib.PQconninfoParse(text.encode(), ctypes.byref(error))
        if not options:
            if error.value is not None:
                lib.PQfreemem(ctypes.cast(error, ctypes.c_void_p))
            return None
        found: dict[str, str] = {}
        i = 0
        while options[i].keyword:
            if options[i].val is not None:
                found[options[i].keyword.decode()] = options[i].val.decode(errors="surrogateescape")
            i += 1
        lib.PQconninfoFree(options)
        return found

    return parse
