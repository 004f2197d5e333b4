"""Custom effect handlers (Pyro ``Messenger`` subclasses, one idea per file)."""
