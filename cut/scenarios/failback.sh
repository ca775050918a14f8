#: extends: failover
#: description: >-
#:   Path groups by priority, failback immediate: path 0 (target 0) has priority 50, the
#:   other two 10 (weightedpath on the SCSI address, so udev's discovery order cannot
#:   matter), so the groups must be {path 0} active, then the other two. The active
#:   group's path is failed under I/O (drive_del): the kernel's active group moves to the
#:   other and I/O follows. It comes back as a new device at the same address: multipathd
#:   must switch the kernel back to its group, and I/O must follow it there.
#: topology: {luns: 1, paths: 3}
#: multipath: |
#:   defaults {
#:   	path_grouping_policy group_by_prio
#:   	prio weightedpath
#:   	prio_args "hbtl ^[0-9]+:[0-9]+:0:[0-9]+$ 50 ^[0-9]+:[0-9]+:[0-9]+:[0-9]+$ 10"
#:   	failback immediate
#:   }
#: env: {EXPECT_GROUP: moved, FAILBACK: back, RESTORE: restore_path, WANT_PATHS: 3,
#:       CHECK_PRIO: 'yes', IO_EACH: 0}
