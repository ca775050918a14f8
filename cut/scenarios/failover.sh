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
#:   FAULT_PATHS: 0    # which paths of LUN 0 the fault takes
#:   WANT_PATHS: 2     # paths the map must have before the fault
#:   DATA_MIB: 4       # data written (and checksummed) before the fault
#:   MAP_WAIT: 30      # seconds for the map to show all paths, settled
#:   FAIL_WAIT: 15     # seconds for the failure to settle in the kernel and multipathd
#:   IO_MARGIN: 2      # requests dm may still send a failed path once the failure settled
#:   IO_MIN: 8         # requests the surviving paths must carry after it settled
#: steps: {map_and_filesystem: 90, fault: 35, io_after_fault: 40, paths_after_fault: 25,
#:         data: 70, umount: 40}

# 1. the map, every path up in the kernel and in multipathd, settled; the settling runs
# beside step 2, which has to wait for the map anyway
mpio_step map_and_filesystem
have_map() { map=$(mpio_lun_map 0); [ -n "$map" ] && [ -b "/dev/mapper/$map" ]; }
if ! mpio_wait_for "$MAP_WAIT" have_map; then
	mpio_check map_paths FAIL "no map device"
	return 0
fi
map=$(mpio_lun_map 0)
dev=/dev/mapper/$map
mpio_settle map_paths "$map" "$WANT_PATHS" 0 "$MAP_WAIT" &
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
mpio_io_snapshot before "$map"

# 3. the fault lands while a direct-I/O writer is in flight, so data I/O, not multipathd's
# checker, is what meets the failed path first (a kernel that fails such I/O instead of
# retrying it on another path must not get away with it because the checker came first)
mpio_step fault
if mpio_passed mounted; then
	dd if=/dev/zero of=/mnt/during bs=4k count=1000 oflag=direct 2>/dev/null &
	writer=$!
fi
faulted=0
for p in $FAULT_PATHS; do
	case $FAULT in
	offline) mpio_offline_path 0 "$p" ;;
	*) mpio_fault "$FAULT" 0 "$p" ;;
	esac && faulted=$((faulted + 1))
done
mpio_expect path_failed "$FAULT $FAULT_PATHS" "$FAULT $([ "$faulted" -gt 0 ] && echo "$FAULT_PATHS")"

# 4. the writer in flight and new I/O after the fault both succeed through the remaining
# paths (direct I/O: each block is its own request, so round-robin meets the failed path)
mpio_step io_after_fault
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

# 5. the kernel and multipathd agree: the faulted paths failed (or gone from the map, when
# removed), the others active, and it stays so
mpio_step paths_after_fault
down=$faulted
[ "$FAULT" = remove_path ] && down=0
mpio_settle paths_after_fault "$map" "$((WANT_PATHS - faulted))" "$down" "$FAIL_WAIT"
mpio_io_snapshot settled "$map"

# 6. the data survives: re-read from the device, not the page cache; then write more, so
# that reads and writes both go through the surviving paths
mpio_step data
if mpio_requires data_intact mounted; then
	echo 3 > /proc/sys/vm/drop_caches
	after=$(timeout 30 sha256sum /mnt/data 2>/dev/null | cut -d' ' -f1)
	mpio_expect data_intact "$before" "${after:-unreadable}"
	timeout 30 dd if=/dev/urandom of=/mnt/more bs=64k count=16 conv=fsync 2>/dev/null
fi
mpio_io_snapshot end "$map"

# 7. once the failure settled, dm sent nothing more to the failed path
if mpio_requires path_io paths_after_fault; then
	mpio_check_path_io path_io settled end
fi

mpio_block multipath-after multipath -ll
mpio_step umount
if mpio_passed mounted; then
	timeout 30 umount /mnt
	mpio_expect umount ok "$(grep -q ' /mnt ' /proc/mounts && echo busy || echo ok)"
fi
