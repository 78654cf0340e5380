"""Kernel facts: the parameter knowledge base, TCP states, versions, schedule models (all pure)."""
