#: extends: disable-group
#: description: >-
#:   Negative control: disable-group, but no group is disabled. The kernel keeps its group,
#:   so the bypass's checks must FAIL (the state, the group, where the I/O went); the group
#:   is enabled all along, so group_enabled passes.
#: env: {DISABLE: skip}
#: expect_fail: [group_disabled, group_moved, io_moved]
