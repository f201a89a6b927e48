"""Records on disk: identity and key, atomic writes, the one checked loader, sweep tables."""
