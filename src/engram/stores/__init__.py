"""Storage backends. Each implements :class:`engram.interfaces.Store`."""
