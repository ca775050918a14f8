#: extends: reinstate
#: description: >-
#:   Negative control: reinstate, but nothing is restored. The restore checks must see the
#:   path still down and getting no I/O, and FAIL on exactly those, on any kernel.
#: env: {RESTORE: skip, RESTORE_WAIT: 4}
#: expect_fail: [paths_after_restore, io_after_restore]
