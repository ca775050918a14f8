#: extends: failover
#: description: >-
#:   Failover grouping, three paths (one per group): the host fails a path of a standby
#:   group, found from the kernel's view at that moment. I/O must not move: the kernel's
#:   active group stays the same one, it carries the I/O, and the failed standby path gets
#:   none; both views agree on one failed path, settled; the data stays intact.
#: topology: {luns: 1, paths: 3}
#: multipath: |
#:   defaults {
#:   	path_grouping_policy failover
#:   }
#: env: {FAULT_PATHS: standby, EXPECT_GROUP: same, WANT_PATHS: 3}
