"""twistd plugin: ``twistd mcpgated -c /etc/mcpgated.ini``.

Only data lives here; ``mcpgated.tap`` is imported lazily by twistd.
"""

from twisted.application.service import ServiceMaker

mcpgated = ServiceMaker(
    "mcpgated",
    "mcpgated.tap",
    "MCP gateway: proxy, secure and observe Model Context Protocol servers.",
    "mcpgated",
)
