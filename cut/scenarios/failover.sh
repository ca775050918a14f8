# shellcheck shell=sh
# Failover: one path fails under a mounted XFS on the multipath map.
# Runs in the guest after udevd and multipathd are up; helpers come from /usr/lib/mpio/lib.sh.
# FAULT=host: the host pulls path0 (drive_del: the disk stays, every command to it fails).
# FAULT=offline: the guest sets the map's first path offline (SCSI rejects its I/O).

# 1. the map, every path up in the kernel and in multipathd, settled; the settling runs
# beside step 2, which has to wait for the map anyway
mpio_step map_and_filesystem $((MAP_WAIT + 60))
have_map() { map=$(mpio_map); [ -n "$map" ] && [ -b "/dev/mapper/$map" ]; }
if ! mpio_wait_for "$MAP_WAIT" have_map; then
	mpio_check map_paths FAIL "no map device"
	mpio_block multipath-before multipath -ll
	return 0
fi
map=$(mpio_map)
dev=/dev/mapper/$map
mpio_settle map_paths "$map" "$PATHS" 0 "$MAP_WAIT" &
settling=$!

# 2. a filesystem with data of known checksum, on disk before the fault
mkfs.xfs -f -q "$dev" && mount -t xfs "$dev" /mnt
mpio_expect mounted yes "$(grep -q ' /mnt xfs ' /proc/mounts && echo yes || echo no)"
if mpio_passed mounted; then
	dd if=/dev/urandom of=/mnt/data bs=1M count="$DATA_MIB" 2>/dev/null
	sync
	before=$(sha256sum /mnt/data | cut -d' ' -f1)
fi
if ! wait "$settling"; then
	mpio_block multipath-before multipath -ll
	return 0
fi
mpio_block multipath-before multipath -ll
mpio_io_snapshot before

# 3. the fault lands while a direct-I/O writer is in flight, so data I/O, not multipathd's
# checker, is what meets the failed path first (a kernel that fails such I/O instead of
# retrying it on another path must not get away with it because the checker came first)
mpio_step fault $((ACK_TIMEOUT + 5))
if mpio_passed mounted; then
	dd if=/dev/zero of=/mnt/during bs=4k count=1000 oflag=direct 2>/dev/null &
	writer=$!
fi
case ${FAULT:-host} in
host)
	if mpio_signal pull-path; then mpio_check path_failed PASS host_pulled; else mpio_check path_failed FAIL no_ack; fi ;;
offline)
	victim=$(mpio_path_states "$map" | awk 'NR == 1 { print $1 }')
	if echo offline > "/sys/dev/block/$victim/device/state"; then
		mpio_check path_failed PASS "$victim offline"
	else
		mpio_check path_failed FAIL "cannot set $victim offline"
	fi ;;
esac

# 4. the writer in flight and new I/O after the fault both succeed through the remaining
# paths (direct I/O: each block is its own request, so round-robin meets the failed path)
mpio_step io_after_fault 40
if mpio_requires io_after_fault mounted path_failed; then
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

# 5. the kernel and multipathd agree: one path failed, the others active, and it stays so
mpio_step paths_after_fault $((FAIL_WAIT + 10))
mpio_settle paths_after_fault "$map" "$((PATHS - 1))" 1 "$FAIL_WAIT"
mpio_io_snapshot settled

# 6. the data survives: re-read from the device, not the page cache; then write more, so
# that reads and writes both go through the surviving paths
mpio_step data 70
if mpio_requires data_intact mounted; then
	echo 3 > /proc/sys/vm/drop_caches
	after=$(timeout 30 sha256sum /mnt/data 2>/dev/null | cut -d' ' -f1)
	mpio_expect data_intact "$before" "${after:-unreadable}"
	timeout 30 dd if=/dev/urandom of=/mnt/more bs=64k count=16 conv=fsync 2>/dev/null
fi
mpio_io_snapshot end

# 7. once the failure settled, dm sent nothing more to the failed path
if mpio_requires path_io paths_after_fault; then
	mpio_check_path_io path_io settled end
fi

mpio_block multipath-after multipath -ll
mpio_step umount 40
if mpio_passed mounted; then
	timeout 30 umount /mnt
	mpio_expect umount ok "$(grep -q ' /mnt ' /proc/mounts && echo busy || echo ok)"
fi
