"""Names vulture cannot see used: Typer registers the command functions by decorator,
dataclass fields reach JSON through asdict(), a parsed column is kept for readers, tarfile
reads TarInfo attributes.  Anything else vulture reports is dead code (tests/unit/test_dead_code.py).
"""

# ruff: noqa
_root  # unused function (tcptune/cli/_app.py:33)
apply_cmd  # unused function (tcptune/cli/apply.py:135)
rollback_cmd  # unused function (tcptune/cli/apply.py:238)
snapshots_cmd  # unused function (tcptune/cli/apply.py:282)
doctor_cmd  # unused function (tcptune/cli/doctor.py:57)
metrics_cmd  # unused function (tcptune/cli/metrics.py:52)
profiles_list  # unused function (tcptune/cli/profiles.py:63)
profiles_show  # unused function (tcptune/cli/profiles.py:80)
profiles_validate  # unused function (tcptune/cli/profiles.py:100)
audit_cmd  # unused function (tcptune/cli/profiles.py:125)
states_cmd  # unused function (tcptune/cli/states.py:65)
trace_cmd  # unused function (tcptune/cli/trace.py:35)
risky_reason  # unused variable (tcptune/core/audit.py:41)
tx_queue  # unused variable (tcptune/core/procfs.py:38)
ignore_failure  # unused variable (tcptune/core/sysctl_text.py:31)
_.gid  # unused attribute (tcptune/host/bundle.py:35)
_.mtime  # unused attribute (tcptune/host/bundle.py:35)
