"""Persistence of model versions: the Store contract and its peewee implementation."""

from mlserver.store.base import Claim, Status, Store, Version
from mlserver.store.sql import SQLStore

__all__ = ["Claim", "SQLStore", "Status", "Store", "Version"]
