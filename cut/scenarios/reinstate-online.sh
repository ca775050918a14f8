#: extends: failover
#: description: >-
#:   Reinstate of the same device: the guest sets path 0 offline under a mounted XFS, then
#:   running again. multipathd's checker must reinstate it, both views must show every path
#:   active and keep doing so, I/O must reach it again, and the data stays intact.
#: env: {FAULT: offline, RESTORE: online}
