#: extends: failback-manual
#: description: >-
#:   Negative control: failback-manual (the same devices come back, failback manual), judged
#:   as if failback were immediate. The kernel rightly keeps the group the failure moved it
#:   to, so the failback check must FAIL, and only it.
#: env: {FAILBACK: back}
#: expect_fail: [failback]
