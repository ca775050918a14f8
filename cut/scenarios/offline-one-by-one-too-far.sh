#: extends: offline-one-by-one-small
#: description: >-
#:   Negative control: offline-one-by-one on one LUN x 2 paths, but the last path goes too.
#:   The path counts still settle (none active, both failed), so the I/O after the last step
#:   must FAIL, on any kernel.
#: env: {KEEP: 0, SEED: 1}
#: expect_fail: [io_after_offline_2]
