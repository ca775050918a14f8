#: extends: disable-group
#: description: >-
#:   Negative control: disable-group, but the group is never enabled again. It stays
#:   disabled, so group_enabled must FAIL, and only it.
#: env: {ENABLE: skip}
#: expect_fail: [group_enabled]
