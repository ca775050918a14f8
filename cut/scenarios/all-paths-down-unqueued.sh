#: extends: all-paths-down
#: description: >-
#:   Negative control: all-paths-down's queueing checks on a map that does not queue
#:   (no_path_retry fail). They must FAIL on exactly these checks, on any kernel.
#: multipath: |
#:   defaults {
#:   	no_path_retry fail
#:   }
#: expect_fail: [queueing, writer_blocked, writer_completed]
