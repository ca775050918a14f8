#: extends: failover
#: description: >-
#:   Negative control: the LUN has one path but failover wants two before the fault, so it
#:   must FAIL on map_paths on any kernel.
#: topology: {luns: 1, paths: 1}
#: env: {MAP_WAIT: 5}
#: expect_fail: [map_paths]
