#: extends: flapping
#: description: >-
#:   Negative control: flapping, but the host fails the other path for good before the
#:   flaps. With no_path_retry fail, fio's I/O must fail while the flapped path is down,
#:   and at the end one path stays failed, so this must come out FAIL on any kernel, on
#:   exactly these checks; if it passes, fio's error counting or the path check is blind.
#: env: {OTHER: failed, SETTLE_WAIT: 5}
#: expect_fail: [paths_after_flaps, fio_clean]
