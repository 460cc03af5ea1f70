"""The application layer: one run of scan, replay or monitor from its checked options to its
written outputs; the CLI parses, calls these, prints and exits.

`scan.run_scan`, `replay.run_replay`, `monitor.run_monitor` run a command; `outputs.RunOutputs`
is the one way a run's alerts and events leave the process (redacted once, to every output).
Submodules are imported on use: a command pays only for what it runs."""
