# shellcheck shell=sh
#: description: >-
#:   Failover grouping, three paths (one per group), XFS mounted: dm's own message bypasses
#:   the active group (`dmsetup message MAP 0 disable_group N`, as a hardware handler's
#:   failed activation does). The group must show D (disabled) in the kernel's status, the
#:   kernel's active group must move off it, and I/O must follow (per-path accounting).
#:   Then enable_group N: the group is no longer disabled, and the data stays intact.
#: topology: {luns: 1, paths: 3}
#: multipath: |
#:   defaults {
#:   	path_grouping_policy failover
#:   	failback manual
#:   }
#: env:
#:   DATA_MIB: 4
#:   MAP_WAIT: 30
#:   IO_MARGIN: 2   # requests the disabled group may still get
#:   IO_MIN: 8      # requests the group I/O moved to must carry
#:   DISABLE: ask   # skip: judge the bypass without asking for it (a negative control)
#:   ENABLE: ask    # skip: judge the enable without asking for it (a negative control)
#: steps: {map_and_filesystem: 90, disable: 60, enable: 30, data: 70, umount: 40}

mpio_step map_and_filesystem
mpio_map_with_xfs 0 "$MPIO_PATHS" "$MAP_WAIT" || return 0
map=$(mpio_lun_map 0)

# group_state MAP DEVS: the kernel's state letter (A, E or D) of the group holding DEVS
group_state() {
	mpio_groups "$1" | awk -v devs="$2" '{ g[$1] = g[$1] (g[$1] == "" ? "" : "+") $3; s[$1] = $2 }
		END { for (n in g) if (g[n] == devs) print s[n] }'
}

mpio_step disable
n=$(mpio_active_group "$map")
bypassed=$(mpio_group_devs "$map" "$n")
[ "$DISABLE" = skip ] || dmsetup message "$map" 0 disable_group "$n"
mpio_io_snapshot before-disable "$map"
timeout 30 dd if=/dev/urandom of=/mnt/bypassed bs=4k count=64 oflag=direct 2>/dev/null
mpio_io_snapshot after-disable "$map"
state=$(group_state "$map" "$bypassed")
if [ "$state" = D ]; then
	mpio_check group_disabled PASS "D (group $n: $bypassed)"
else
	mpio_check group_disabled FAIL "${state:-no such group} (group $n: $bypassed; want D)"
fi
mpio_check_group group_moved "$map" moved "$bypassed"
# every path but the bypassed group's: the I/O must have gone there, and none to it
others=$(mpio_groups "$map" | awk -v b="+$bypassed+" '!index(b, "+" $3 "+") { d = d (d ? "+" : "") $3 } END { print d }')
mpio_check_group_io io_moved "$map" before-disable after-disable "$others"

mpio_step enable
[ "$DISABLE" = skip ] || [ "$ENABLE" = skip ] || dmsetup message "$map" 0 enable_group "$n"
state=$(group_state "$map" "$bypassed")
case $state in
A | E) mpio_check group_enabled PASS "$state (group $n: $bypassed)" ;;
*) mpio_check group_enabled FAIL "${state:-no such group} (group $n: $bypassed; want A or E)" ;;
esac

mpio_step data
mpio_check_data data_intact

mpio_step umount
mpio_umount
