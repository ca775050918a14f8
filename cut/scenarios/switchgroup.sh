# shellcheck shell=sh
#: description: >-
#:   Failover grouping, three paths (one per group), XFS mounted: `multipathd switchgroup`
#:   to every group in turn, the current one last. After each switch the kernel's active
#:   group must be the one asked for (known by its path, not its number), I/O must go there
#:   and nowhere else (per-path accounting), and the data stays intact.
#: topology: {luns: 1, paths: 3}
#: multipath: |
#:   defaults {
#:   	path_grouping_policy failover
#:   	failback manual
#:   }
#: env:
#:   DATA_MIB: 4
#:   MAP_WAIT: 30
#:   IO_MARGIN: 2   # requests a group not asked for may still get after a switch
#:   IO_MIN: 8      # requests the group asked for must carry
#:   SWITCH: ask    # skip: judge the switches without asking for them (a negative control)
#: steps: {map_and_filesystem: 90, switch: 60, data: 70, umount: 40}

mpio_step map_and_filesystem
mpio_map_with_xfs 0 "$MPIO_PATHS" "$MAP_WAIT" || return 0
map=$(mpio_lun_map 0)
groups=$(mpio_groups "$map" | awk 'END { print $1 + 0 }')
first=$(mpio_active_group "$map")
mpio_expect groups "$MPIO_PATHS groups" "$groups groups"

mpio_step switch
switched=0 i=1
while [ "$i" -le "$groups" ]; do
	g=$(((first + i - 1) % groups + 1))  # the next group after the current one, round
	want=$(mpio_group_devs "$map" "$g")
	reply=skipped
	[ "$SWITCH" = skip ] || reply=$(multipathd switchgroup map "$map" group "$g" 2>&1)
	mpio_io_snapshot "before-$g" "$map"
	timeout 30 dd if=/dev/urandom of="/mnt/switch-$g" bs=4k count=64 oflag=direct 2>/dev/null
	mpio_io_snapshot "after-$g" "$map"
	mpio_check_group "switch_$i" "$map" same "$want"
	mpio_check_group_io "io_$i" "$map" "before-$g" "after-$g" "$want"
	[ "$reply" = ok ] && switched=$((switched + 1))
	i=$((i + 1))
done
mpio_expect switchgroup_replies "$groups ok" "$switched ok"

mpio_step data
mpio_check_data data_intact

mpio_step umount
mpio_umount
