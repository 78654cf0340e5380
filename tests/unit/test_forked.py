"""Work in a forked child (tcptune.host.forked): the dest view's key counter and the fd sample
give what the same work gives in process, and a failing child is seen, not hidden."""

from __future__ import annotations

import os
import random

import pytest

from tcptune.core.inet_diag import DEST_KEEP, DestKeys
from tcptune.errors import ExitCode, TcptuneError
from tcptune.host.forked import Forked
from tcptune.host.owners import SampleInChild, sample_socket_fds
from tcptune.host.sockdiag import ForkedDestKeys


def _batches(seed: int = 7):
    """Key batches as the dest view hands them on: 11- and 35-byte keys, with repeats and ties."""
    rng = random.Random(seed)
    pool = {k: [bytes(rng.randrange(256) for _ in range(k)) for _ in range(300)] for k in (11, 35)}
    for _ in range(40):
        k = rng.choice((11, 35))
        m = rng.randrange(1, 400)
        keys = b"".join(rng.choice(pool[k]) for _ in range(m))
        in_range = bytes(rng.random() < 0.7 for _ in range(m))
        syn_sent = bytes(rng.random() < 0.1 for _ in range(m)) if rng.random() < 0.5 else b""
        yield k, keys, in_range, syn_sent


def test_the_forked_key_counter_gives_what_the_in_process_one_gives():
    here, there = DestKeys(), ForkedDestKeys(Forked(ForkedDestKeys.count, feed=True))
    for batch in _batches():
        here.add(*batch)
        there.add(*batch)
    expected = here.busiest()
    assert there.busiest() == expected
    assert set(expected) == {11, 35} and all(len(top) <= DEST_KEEP for pair in expected.values() for top in pair)


def test_a_key_counter_whose_child_died_is_an_internal_error():
    child = Forked(ForkedDestKeys.count, feed=True)
    os.kill(child.pid, 9)  # our own child, by its pid
    counter = ForkedDestKeys(child)
    with pytest.raises(TcptuneError) as err:
        for batch in _batches():  # a write may already fail: the same error
            counter.add(*batch)
        counter.busiest()
    assert err.value.exit_code == ExitCode.INTERNAL


def test_a_child_that_raises_gives_none_and_the_fd_sample_then_runs_here():
    def boom(_input):
        raise RuntimeError("no")

    assert Forked(boom).result() is None
    assert Forked(lambda _input: ("ok", 1)).result() == ("ok", 1)
    forked = {(x.pid, x.sockets) for x in SampleInChild(sample=64).result() if x.pid == os.getpid()}
    here = {(x.pid, x.sockets) for x in sample_socket_fds(sample=64) if x.pid == os.getpid()}
    assert forked == here


def test_the_fd_samples_error_comes_back_from_the_child_as_it_was(tmp_path):
    """An unlistable proc tree: the child's TcptuneError is raised here, with its exit code."""
    with pytest.raises(TcptuneError) as err:
        SampleInChild(proc=str(tmp_path / "no-such-proc")).result()
    assert err.value.exit_code == ExitCode.BAD_INPUT and "cannot list" in err.value.message
