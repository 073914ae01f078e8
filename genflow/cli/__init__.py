"""The genflow command line (only this package and experiments/ read configs)."""
