#: extends: all-paths-down-fail
#: description: >-
#:   Negative control: all-paths-down-fail's checks on a map that queues (no_path_retry
#:   queue): the writer gets no error, so writer_failed must FAIL, on any kernel.
#: multipath: |
#:   defaults {
#:   	no_path_retry queue
#:   }
#: env: {ERROR_WAIT: 4}
#: expect_fail: [writer_failed]
