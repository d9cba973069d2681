"""
Gateway-side policy: who may call (plans and credentials), what they may
call (MCP access control) and how often (rate limits).
"""
