"""The `states` use case in process (tcptune.ops.sockets): source choice, errors, owners, warnings."""

from __future__ import annotations

import os
import shutil
import socket

import pytest
from nsutil import run_in_netns

from tcptune.errors import ExitCode, TcptuneError
from tcptune.host.source import DumpHost, Host
from tcptune.kernel.states import TcpState
from tcptune.ops.sockets import collect_summary, sample


@pytest.fixture
def snapshot(tmp_path, data_dir):
    root = tmp_path / "snap"
    (root / "proc/sys/net/ipv4").mkdir(parents=True)
    (root / "proc/net").mkdir(parents=True)
    shutil.copy(data_dir / "proc_net_tcp.zoo", root / "proc/net/tcp")
    shutil.copy(data_dir / "proc_net_tcp6.zoo", root / "proc/net/tcp6")
    (root / "proc/sys/net/ipv4/tcp_max_tw_buckets").write_text("6\n")
    return root


def test_root_tree_is_read_from_proc_net_tcp(snapshot):
    s = sample(Host(snapshot), "local-port")
    assert s.summary.source.endswith("proc/net/tcp6")
    assert s.summary.counts[TcpState.ESTABLISHED] == 24 and sum(s.summary.counts.values()) == 78
    assert sum(s.summary.groups.values()) == 78
    assert [w.key for w in s.warnings] == ["net.ipv4.tcp_max_tw_buckets"]


def test_one_family_from_a_tree(snapshot):
    s = collect_summary(Host(snapshot), None, {TcpState.LISTEN}, (socket.AF_INET6,))
    assert s.counts[TcpState.LISTEN] == 3 and sum(s.counts.values()) == 3
    assert "proc/net/tcp6" in s.source and "proc/net/tcp +" not in s.source


def test_a_sysctl_dump_has_no_socket_table():
    with pytest.raises(TcptuneError, match="not a socket table") as e:
        sample(DumpHost({}, "d.txt"))
    assert e.value.exit_code == ExitCode.BAD_INPUT


def test_by_process_needs_running_processes(snapshot):
    with pytest.raises(TcptuneError, match="needs running processes"):
        sample(Host(snapshot), "process")


def test_a_tree_without_tcp_tables(tmp_path):
    (tmp_path / "proc/sys/net").mkdir(parents=True)
    with pytest.raises(TcptuneError, match="no proc/net/tcp"):
        sample(Host(tmp_path))


def _live_owner_and_listener():
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(7)
    c = socket.create_connection(lst.getsockname())
    s, _ = lst.accept()
    c.shutdown(socket.SHUT_WR)  # s: CLOSE_WAIT, c: FIN_WAIT2
    import time

    time.sleep(0.1)
    host = Host("/")
    by_process = sample(host, "process").summary
    counts = sample(host).summary
    return (
        os.getpid(),
        {(st.name, owner): n for (st, owner), n in by_process.groups.items()},
        [(x.port, x.accept_queue, x.backlog) for x in counts.listeners],
        lst.getsockname()[1],  # (the sockets live until this function returns)
        counts.source,
        counts.orphans,
    )


def test_live_namespace_through_netlink_with_owners():
    pid, groups, listeners, port, source, orphans = run_in_netns(_live_owner_and_listener)
    assert source.startswith("netlink sock_diag") and orphans is not None  # + " (network namespace net:[N])" in a child
    owners = {owner for (_s, owner) in groups if isinstance(owner, tuple)}
    assert {o[0] for o in owners} == {pid}
    assert sum(groups.values()) == 3  # the listener, FIN_WAIT2 and CLOSE_WAIT
    assert listeners == [(port, 0, 7)]
