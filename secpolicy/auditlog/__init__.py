"""The audit trail of secpolicy: tamper-evident log, event store, timeline, anomaly detection
and alert sinks. Import the submodules; nothing is loaded or registered here."""
