#: extends: target-error
#: description: >-
#:   Negative control: target-error, but the host fails path 0 (drive_del) before the
#:   erroring I/O. The I/O still gets the LUN's error through path 1, but a path did fail,
#:   so this must come out FAIL on any kernel on exactly the no-path-failed checks; if it
#:   passes, they are blind.
#: env: {PULL: 0, FAIL_WAIT: 4}  # the settle cannot pass: 4 s is enough to say so
#: expect_fail: [paths_after_error, no_path_failed]
