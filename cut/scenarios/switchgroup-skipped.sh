#: extends: switchgroup
#: description: >-
#:   Negative control: switchgroup, but no switch is asked for. The kernel keeps its group,
#:   so every check of a switch to another group must FAIL (the group, and where the I/O
#:   went), and the replies; the last switch, back to the group it started in, passes.
#: env: {SWITCH: skip}
#: expect_fail: [switch_1, io_1, switch_2, io_2, switchgroup_replies]
