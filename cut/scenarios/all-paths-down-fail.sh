#: extends: all-paths-down
#: description: >-
#:   Every path is pulled under a running writer with no_path_retry fail: the writer must get
#:   clean I/O errors within a deadline, not hang, and XFS must shut down and unmount.
#: multipath: |
#:   defaults {
#:   	no_path_retry fail
#:   }
#: env: {EXPECT: fail}
