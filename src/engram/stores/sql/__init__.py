"""The storage core shared by the SQL stores: the rules of storage, decided once above the dialects.

:mod:`.store` implements :class:`~engram.interfaces.Store` over a dialect (:mod:`.dialect` lists what a
dialect implements), :mod:`.writes` says what dedup, supersession and history mean, :mod:`.filters`
walks filter trees, :mod:`.rows` turns rows into records, :mod:`.migrations` is the one migration
runner and :mod:`.service` the server state (over the small :mod:`.db` adapter). See
docs/architecture.md, "Adding a SQL store".
"""
