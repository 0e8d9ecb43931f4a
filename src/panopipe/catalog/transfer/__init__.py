"""Moving a SQLite catalog to PostgreSQL / Amazon RDS: the copy, its resumption and its verification."""

from panopipe.catalog.transfer.copy_source import ReaderName, default_reader
from panopipe.catalog.transfer.move import (
    DEFAULT_BATCH_SIZE,
    TABLES,
    TableCheck,
    TableTransfer,
    TransferProgress,
    TransferReport,
    migrate_catalog,
    verify_transfer,
)

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "TABLES",
    "ReaderName",
    "TableCheck",
    "TableTransfer",
    "TransferProgress",
    "TransferReport",
    "default_reader",
    "migrate_catalog",
    "verify_transfer",
]
