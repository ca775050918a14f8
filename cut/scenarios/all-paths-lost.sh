#: extends: failover
#: description: >-
#:   Negative control: failover, but the host fails both paths. With no_path_retry fail the
#:   I/O must fail and no path is left to carry any, so this must come out FAIL on any
#:   kernel, on exactly these checks; if it passes, the checks are blind.
#: env: {FAULT_PATHS: 0 1}  # FAIL_WAIT stays 15 s: with every path gone multipathd can
#:                           # reinstate one for a moment before all settle as failed
#: expect_fail: [io_after_fault, data_intact, path_io]
