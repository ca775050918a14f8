#: extends: failover
#: description: >-
#:   Failover grouping, three paths (one per group): the host fails the active group's path
#:   under a writer in flight, found from the kernel's view at that moment. The kernel's
#:   active group must move, I/O must follow it (the new group's path carries it, the failed
#:   one gets none), no I/O error is seen, and the data stays intact.
#: topology: {luns: 1, paths: 3}
#: multipath: |
#:   defaults {
#:   	path_grouping_policy failover
#:   }
#: env: {FAULT_PATHS: active, EXPECT_GROUP: moved, WANT_PATHS: 3}
