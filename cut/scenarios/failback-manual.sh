#: extends: failback
#: description: >-
#:   Failback manual: as failback (groups by priority), but every path of the active group
#:   is set offline in the guest and then online again (the same devices): the kernel's
#:   active group must stay where the failure moved it, and I/O with it. Not a new device:
#:   adding one makes multipathd reload the map, and a reload starts at the best group,
#:   failback manual or not (multipath-tools 0.9.4). The priorities are not checked: under
#:   manual failback multipathd keeps the group it started with, best or not, while udev
#:   brings in the paths one by one.
#: multipath: |
#:   defaults {
#:   	path_grouping_policy group_by_prio
#:   	prio weightedpath
#:   	prio_args "hbtl ^[0-9]+:[0-9]+:0:[0-9]+$ 50 ^[0-9]+:[0-9]+:[0-9]+:[0-9]+$ 10"
#:   	failback manual
#:   }
#: env: {FAILBACK: stay, FAULT_PATHS: active-group, CHECK_PRIO: 'no', FAULT: offline,
#:       RESTORE: online}
