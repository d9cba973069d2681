"""
OAuth relay for secured backends: the gateway stays out of the token
exchange but makes a backend's OAuth discoverable through its own URL.

- L{challenge}: parse C{WWW-Authenticate} and point C{resource_metadata} at
  the gateway (RFC 9110 section 11.6.1, RFC 9728 section 5.1);
- L{metadata}: fetch, cache and rewrite the backend's protected-resource
  metadata (RFC 9728) and, on request, its authorization-server metadata
  (RFC 8414, passed through unchanged);
- L{wellknown}: which well-known request paths the gateway answers, and the
  public URLs of an API;
- L{relay}: the glue L{mcpgated.proxy.resource} calls.
"""
