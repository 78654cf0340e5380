"""tcptune: audit, tune and prove the Linux kernel's TCP behaviour."""

__version__ = "0.1.0"
