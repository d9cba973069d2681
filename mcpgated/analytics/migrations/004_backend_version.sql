-- The MCP version the gateway spoke to the backend when an API's "protocol"
-- settings bridged versions (protocol_version is the client's); NULL when it
-- did not bridge, and for records written before it was recorded.
ALTER TABLE exchanges ADD COLUMN backend_version TEXT;
