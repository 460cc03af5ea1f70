"""Runtime events: the normalised Event, its sources (JSONL, auditd, live eBPF), the matcher
index, correlation state, the rule engine and replay. Submodules are imported explicitly."""
