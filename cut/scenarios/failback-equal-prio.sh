#: extends: failback
#: description: >-
#:   Negative control: failback with every path at the same priority. group_by_prio then
#:   makes one group, so the priority check must FAIL (one group), and so must the check
#:   that the active group moved when its path failed (the group keeps two paths).
#: multipath: |
#:   defaults {
#:   	path_grouping_policy group_by_prio
#:   	prio weightedpath
#:   	prio_args "hbtl ^[0-9]+:[0-9]+:[0-9]+:[0-9]+$ 10"
#:   	failback immediate
#:   }
#: expect_fail: [prio_groups, active_group]
