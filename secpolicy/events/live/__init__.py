"""Live events from the running kernel: bpf/secpolicy.bpf.c loaded with bcc (kernel), its ring
buffer (ring) drained and decoded (record, decode, procs) into contract-shaped event dicts by
LiveSource (source), with every record that could not be delivered counted."""

from secpolicy.events.live.kernel import available_types, find_libpam, tracefs_dir
from secpolicy.events.live.record import header_constants
from secpolicy.events.live.source import LiveSource, LiveStats, LossWindow

__all__ = [
    "LiveSource",
    "LiveStats",
    "LossWindow",
    "available_types",
    "find_libpam",
    "header_constants",
    "tracefs_dir",
]
