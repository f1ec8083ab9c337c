"""Annotation: the project store (SQLite, WAL) and projects made from datasets and new videos.

The store knows nothing of mask engines; engines know nothing of the store.

Example:
    >>> from longrvos_data.annotation import Store, Write, init_project
    >>> init_project("proj", "data/mevis", split="valid_u")
    >>> with Store.open("proj") as store:
    ...     store.write("valid_u", "v1", [Write("10", 0, base=1, state="absent")], user="ana")
"""
from .project import add_videos, init_project, relink, validate_project
from .store import Cell, Conflict, Store, StoreError, UndoRefused, Write

__all__ = ["Cell", "Conflict", "Store", "StoreError", "UndoRefused", "Write", "add_videos", "init_project", "relink",
           "validate_project"]
