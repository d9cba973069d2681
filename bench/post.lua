-- wrk body script: a small MCP tools/call POST (the URL picks the JSON or
-- the one-event SSE answer).
wrk.method = "POST"
wrk.body = '{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hello from wrk"}}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
wrk.headers["Mcp-Session-Id"] = "bench-session-0123456789abcdef"
wrk.headers["MCP-Protocol-Version"] = "2025-06-18"
