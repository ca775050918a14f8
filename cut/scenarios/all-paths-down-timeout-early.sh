#: extends: all-paths-down-timeout
#: description: >-
#:   Negative control: all-paths-down-timeout's checks on a map that does not queue
#:   (no_path_retry fail): the writer's errors come at once, before the timer could fire,
#:   so writer_failed must FAIL, on any kernel.
#: multipath: |
#:   defaults {
#:   	no_path_retry fail
#:   }
#: expect_fail: [writer_failed]
