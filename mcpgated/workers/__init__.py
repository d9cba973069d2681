"""
C{[gateway] workers = N}: the gateway served by N processes sharing the
listening sockets, supervised by the twistd process (L{pool}: the parent's
side; L{main}: a worker; L{protocol}: the control channel between them;
L{metrics}: /metrics over all of them).
"""
