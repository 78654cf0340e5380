"""Host layer: every read and write of the machine, behind the typed seam in tcptune.host.source."""
