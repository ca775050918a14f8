# shellcheck shell=sh
#: description: >-
#:   Fail one of two paths under a mounted XFS, while a direct-I/O writer is in flight. I/O
#:   must go on through the other path; the kernel and multipathd must agree on one failed
#:   and one active path and keep agreeing; dm must send no more data I/O to the failed
#:   path once that has settled; the data written before the fault must read back intact.
#: topology: {luns: 1, paths: 2}
#: env:
#:   FAULT: fail_path  # fail_path (host: drive_del), remove_path (host: device_del) or
#:                     # offline (the guest's sysfs)
#:   FAULT_PATHS: active  # which paths of LUN 0 the fault takes: numbers, or roles
#:                        # resolved from the kernel's view at the fault (active: a path
#:                        # of the group dm sends I/O to; standby, group:N, active-group)
#:   EXPECT_GROUP: any # the kernel's active group once the fault settled: same (it must
#:                     # not change), moved (it must), or any; not any: I/O must follow it
#:   CHECK_PRIO: no    # yes: the groups must follow the paths' priorities (group_by_prio)
#:   FAILBACK: any     # the active group once the paths are restored: back (to the one
#:                     # before the fault), stay (where the fault moved it), or any
#:   RESTORE: none     # then bring them back: restore_path (host: a new device at the same
#:                     # address), online (the guest's sysfs: the same device), skip (the
#:                     # restore checks without a restore: a negative control) or none
#:   WANT_PATHS: 2     # paths the map must have before the fault
#:   MAP_TABLE_HAS: '' # words the kernel's table of the map must hold (a mode the scenario
#:                     # asks multipath.conf for, e.g. "queue_mode bio"): check map_table
#:   DATA_MIB: 4       # data written (and checksummed) before the fault
#:   MAP_WAIT: 30      # seconds for the map to show all paths, settled
#:   FAIL_WAIT: 15     # seconds for the failure to settle in the kernel and multipathd
#:   RESTORE_WAIT: 20  # seconds for the restored paths to be taken back, settled
#:   IO_MARGIN: 2      # requests dm may still send a failed path once the failure settled
#:   IO_MIN: 8         # requests the surviving paths must carry after it settled
#:   IO_EACH: 4        # requests each path must carry once restored
#: steps: {map_and_filesystem: 90, fault: 35, io_after_fault: 40, paths_after_fault: 25,
#:         data: 70, restore: 40, paths_after_restore: 30, io_after_restore: 70, umount: 40}

# 1. the map, every path up in the kernel and in multipathd, settled, with XFS and data
mpio_step map_and_filesystem
mpio_map_with_xfs 0 "$WANT_PATHS" "$MAP_WAIT" || return 0
map=$(mpio_lun_map 0)
mpio_io_snapshot before "$map"
[ "$CHECK_PRIO" = yes ] && mpio_check_prio_groups prio_groups "$map"
if [ -n "$MAP_TABLE_HAS" ]; then  # asked for is not applied: multipathd may refuse a setting
	table=$(dmsetup table "$map")
	case " $table " in
	*" $MAP_TABLE_HAS "*) mpio_check map_table PASS "$MAP_TABLE_HAS" ;;
	*) mpio_check map_table FAIL "no '$MAP_TABLE_HAS' in table: $table" ;;
	esac
fi

# 2. the fault lands while a direct-I/O writer is in flight, so data I/O, not multipathd's
# checker, is what meets the failed path first (a kernel that fails such I/O instead of
# retrying it on another path must not get away with it because the checker came first).
# It writes in rounds until the fault has landed, then one round more: however fast the
# machine writes (KVM), it is still writing when the path dies and after.
mpio_step fault
group_before=$(mpio_group_devs "$map")
rm -f "$MPIO_RUN/writer.stop"
(
	last=
	while :; do
		[ -e "$MPIO_RUN/writer.stop" ] && last=1
		dd if=/dev/zero of=/mnt/during bs=4k count=64 oflag=direct conv=notrunc 2>/dev/null || exit 1
		[ -z "$last" ] || exit 0
	done
) &
writer=$!
# the roles resolve once, now, with the writer in flight (result.json: action "target")
# shellcheck disable=SC2086 # a list of paths or roles
targets=$(mpio_resolve 0 $FAULT_PATHS)
faulted=0 took=
for p in $targets; do
	case $FAULT in
	offline) mpio_offline_path 0 "$p" ;;
	*) mpio_fault "$FAULT" 0 "$p" ;;
	esac && faulted=$((faulted + 1)) took="$took $p"
done
mpio_expect path_failed "$FAULT ${targets:-(no path is $FAULT_PATHS)}" "$FAULT${took:- none}"
: > "$MPIO_RUN/writer.stop"

# 3. the writer in flight and new I/O after the fault both succeed through the remaining
# paths (direct I/O: each block is its own request, so round-robin meets the failed path)
mpio_step io_after_fault
if mpio_requires io_after_fault path_failed; then
	wait "$writer"
	during=$?
	timeout 30 dd if=/dev/urandom of=/mnt/after bs=64k count=16 oflag=direct conv=fsync 2>/dev/null
	after=$?
	if [ "$during" = 0 ] && [ "$after" = 0 ]; then
		mpio_check io_after_fault PASS ok
	else
		mpio_check io_after_fault FAIL "writer in flight exit $during, writer after exit $after"
	fi
fi

# 4. the kernel and multipathd agree: the faulted paths failed (or gone from the map, when
# removed), the others active, and it stays so
mpio_step paths_after_fault
down=$faulted
[ "$FAULT" = remove_path ] && down=0
mpio_settle paths_after_fault "$map" "$((WANT_PATHS - faulted))" "$down" "$FAIL_WAIT"
mpio_io_snapshot settled "$map"

# 5. the data survives; then more is written, so that reads and writes both go through the
# surviving paths
mpio_step data
mpio_check_data data_intact && timeout 30 dd if=/dev/urandom of=/mnt/more bs=64k count=16 conv=fsync 2>/dev/null
mpio_io_snapshot end "$map"
# the group the kernel sends I/O to, read once I/O has gone there since the fault (with
# no I/O yet, dm may have no current group, and its status then names group 1)
group_after=$(mpio_group_devs "$map")
if [ "$EXPECT_GROUP" != any ] && mpio_requires active_group paths_after_fault; then
	mpio_check_group active_group "$map" "$EXPECT_GROUP" "$group_before"
fi
if [ "$EXPECT_GROUP" != any ] && mpio_requires group_io paths_after_fault; then
	# same: the group the I/O went to before the fault; moved: the one the kernel chose
	mpio_check_group_io group_io "$map" settled end "$([ "$EXPECT_GROUP" = same ] && echo "$group_before")"
fi

# 6. once the failure settled, dm sent nothing more to the failed path
if mpio_requires path_io paths_after_fault; then
	mpio_check_path_io path_io settled end
fi
mpio_block multipath-after multipath -ll

# 7. the paths come back: multipathd takes them into the map, both views show every path
# active and keep doing so, and each path carries I/O again
if [ "$RESTORE" != none ]; then
	mpio_step restore
	for p in $targets; do  # the paths the fault took (a role would now name another)
		case $RESTORE in
		online) mpio_online_path 0 "$p" ;;
		restore_path) mpio_fault restore_path 0 "$p" ;;
		esac
	done
	mpio_step paths_after_restore
	mpio_settle paths_after_restore "$map" "$WANT_PATHS" 0 "$RESTORE_WAIT"
	mpio_expect_up "$map"
	mpio_io_snapshot restored "$map"
	mpio_step io_after_restore
	timeout 30 dd if=/dev/urandom of=/mnt/restored bs=4k count=256 oflag=direct 2>/dev/null
	mpio_check_data data_after_restore
	mpio_io_snapshot reinstated "$map"
	mpio_check_path_io io_after_restore restored reinstated "$IO_EACH"
	# failback: the kernel's active group returns to the one the fault left (back), or
	# stays where the fault moved it (stay); either way I/O follows the active group
	if [ "$FAILBACK" != any ] && mpio_requires failback paths_after_restore; then
		# back: to the group of the restored paths (a new device, for restore_path)
		restored=$(for p in $targets; do mpio_path_dev 0 "$p"; done | tr '\n' '+')
		[ "$FAILBACK" = back ] && mpio_check_group failback "$map" has "${restored%+}"
		[ "$FAILBACK" = stay ] && mpio_check_group failback "$map" same "$group_after"
		mpio_check_group_io io_follows_failback "$map" restored reinstated
	fi
	mpio_block multipath-restored multipath -ll
fi

mpio_step umount
mpio_umount
