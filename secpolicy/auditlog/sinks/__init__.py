"""Where alerts go: JSON lines, syslog (RFC 5424 over UDP, TCP, TLS), webhooks with an on-disk
spool, in JSON, CEF, LEEF or OCSF, behind deduplication and rate limiting."""
