#: extends: failover
#: description: >-
#:   Failover with the fault made inside the guest: path 0 is set offline through sysfs (as
#:   systemd's storage test does), so SCSI rejects its I/O before dispatch. Same checks.
#: env: {FAULT: offline}
