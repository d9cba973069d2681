"""
The MCP protocol layer: pure functions over bytes and decoded JSON, with no
Twisted and no I/O. Everything above (policy, analytics, proxy) reads
messages through it, so the gateway reads a message one way only.
"""
