#: extends: failover
#: description: >-
#:   device_del a path under I/O (the host waits for DEVICE_DELETED): the map must drop it
#:   and go on with the other. Then add it back at the same address: the map must regain it,
#:   I/O must reach it, and the data stays intact.
#: env: {FAULT: remove_path, RESTORE: restore_path}
