#: extends: failover
#: description: >-
#:   Fail a path under a mounted XFS (drive_del), then restore it as a new scsi-hd at the same
#:   address on the same LUN file: multipathd must drop the dead device, take the new one
#:   into the map, both views must show every path active and keep doing so, I/O must reach
#:   it again (per-path counts rise), and the data stays intact throughout.
#: env: {RESTORE: restore_path}
