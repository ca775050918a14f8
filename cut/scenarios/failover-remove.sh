#: extends: failover
#: description: >-
#:   Failover with path 0 removed (device_del; the host waits for DEVICE_DELETED): the SCSI
#:   device leaves the guest, and the map must drop it and carry on with the other path.
#: env: {FAULT: remove_path}
