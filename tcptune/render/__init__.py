"""Rendering: one Output object (render/output.py: width, colour, unicode, tables that fit)
and one module per command family, each turning ops' typed results into text, JSON or
Prometheus metrics.  Nothing here reads the machine.
"""
