"""
Fixtures shared by the security tests: a scripted MCP backend
(L{McpPeer}) and a raw backend that records every byte it gets
(L{Recording}), one of each per test module.
"""

from __future__ import annotations

from typing import Iterator

import pytest

from tests.security.edge_support import Recording
from tests.security.mcp_peer import McpPeer


@pytest.fixture(scope="module")
def peer() -> Iterator[McpPeer]:
    p = McpPeer()
    yield p
    p.stop()


@pytest.fixture(scope="module")
def backend() -> Iterator[Recording]:
    recording = Recording()
    yield recording
    recording.stop()
