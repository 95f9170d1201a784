"""Persistence of model versions: the Store contract and its peewee implementation."""

from mlserver.store.base import SERVED, Claim, Page, Status, Store, Version
from mlserver.store.sql import SQLStore

__all__ = ["SERVED", "Claim", "Page", "SQLStore", "Status", "Store", "Version"]
