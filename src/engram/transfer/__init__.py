"""Moving memories: Engram's own export format, imports from mem0 (open source and Platform), backups.

Everything here works through :class:`engram.AsyncMemory` and the :class:`engram.interfaces.Store`
interface, so the CLI, the server and any script share one implementation.
"""

from engram.transfer.exporter import export_ids, export_lines, export_memories, export_to, walk_records
from engram.transfer.importer import ImportReport, Incoming, import_file, import_memories

__all__ = [
    "ImportReport",
    "Incoming",
    "export_ids",
    "export_lines",
    "export_memories",
    "export_to",
    "import_file",
    "import_memories",
    "walk_records",
]
