"""mcpgated: an MCP gateway daemon built on Twisted."""

__version__ = "0.1.0"
