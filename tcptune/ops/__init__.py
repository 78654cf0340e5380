"""Use cases: each takes a source and options, returns a typed result; no Typer, no printing."""
