#: extends: failover
#: description: >-
#:   Negative control: failover-bio's check that the map is bio-based, on a map left
#:   request-based (no queue_mode in multipath.conf). map_table must FAIL, and only it.
#: env: {MAP_TABLE_HAS: 'queue_mode bio'}
#: expect_fail: [map_table]
