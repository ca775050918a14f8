#: extends: failback
#: description: >-
#:   Failback immediate with the same device coming back: the active group's path is set
#:   offline in the guest, then online again. The kernel's active group must return to it,
#:   and I/O with it.
#: env: {FAULT: offline, RESTORE: online}
