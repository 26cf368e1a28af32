"""The storage core shared by the SQL stores: the rules of storage, decided once above the dialects.

:mod:`.filters` walks a filter tree, :mod:`.store` implements :class:`~engram.interfaces.Store` on top of a
dialect (:mod:`.dialect` says what one implements), :mod:`.writes` holds what dedup, supersession and
history mean, :mod:`.migrations` is the one migration runner and :mod:`.service` the server state.
"""
