from __future__ import annotations

import pytest

from tcptune.errors import TcptuneError
from tcptune.kernel.version import format_version, parse_version, version_matches


def test_parse_release_strings():
    assert parse_version("6.18.44-fc-v657") == (6, 18, 44)
    assert parse_version("4.12") == (4, 12, 0)
    assert format_version((4, 12, 0)) == "4.12"
    with pytest.raises(TcptuneError):
        parse_version("linux")


@pytest.mark.parametrize(
    "version,spec,ok",
    [
        ((6, 5, 13), "6.5", True),
        ((6, 5, 13), "==6.5", True),
        ((6, 6, 0), "6.5", False),
        ((6, 5, 13), "!=6.5", False),
        ((6, 18, 44), ">=4.12", True),
        ((4, 11, 9), ">=4.12", False),
        ((5, 10, 0), ">=5.4,<6.0", True),
        ((6, 0, 1), ">=5.4,<6.0", False),
        ((6, 5, 0), "==6.5.0", True),
    ],
)
def test_ranges(version, spec, ok):
    assert version_matches(version, spec) is ok


def test_bad_range_is_a_clear_error():
    with pytest.raises(TcptuneError, match="not understood"):
        version_matches((6, 18, 0), "newest")
