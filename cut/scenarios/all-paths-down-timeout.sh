#: extends: all-paths-down
#: description: >-
#:   Every path is pulled under a writer with no_path_retry queue and dm_multipath's
#:   queue_if_no_path_timeout_secs at 5: multipathd keeps the map queueing, so only the
#:   kernel's own timer can end it (for a multipathd that died). The writer must stay queued
#:   until the timer fires, then get its I/O errors, and XFS must shut down and unmount.
#: env: {EXPECT: timeout, NOPATH_TIMEOUT: 5}
