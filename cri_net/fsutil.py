"""File helpers for every layer of cri-net: atomic writes and bounded reads of regular files.

They live in `cri_net.libcni` (which must stand alone, as Go's libcni does) and are handed
on here, so the layers above never reach into the library's modules for them.
"""

from .libcni.atomic import TEMP_PREFIX, atomic_write, is_temp, make_dirs, remove_stale_temps
from .libcni.fileread import FileReadError, check_regular, read_regular

__all__ = ["TEMP_PREFIX", "atomic_write", "is_temp", "make_dirs", "remove_stale_temps", "FileReadError",
           "check_regular", "read_regular"]
