"""
C{mcpgatedctl}: the gateway's configuration as code, over the admin API.

It talks to a running daemon over HTTP only (L{client}); from the package it
uses pure value code only (the validation of definitions, to compare a file
with what the gateway holds). L{documents} reads and writes the files,
L{export} makes one from a gateway, L{reconcile} works out (and makes) the
changes that bring a gateway to a file, L{logs} shows the exchange log, and
L{main} is the command line.
"""
