"""``torchslim migrate``: rewrite NNI scripts for torchslim (imports, renamed names, config keys)."""
from torchslim.migration.rewrite import Migration, Note, migrate_file, migrate_source

__all__ = ["Migration", "Note", "migrate_file", "migrate_source"]
