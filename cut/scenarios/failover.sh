# Failover: one path pulled from under a mounted XFS on the multipath map.
# Runs in the guest after udevd and multipathd are up; helpers come from /usr/lib/mpio/lib.sh.

# 1. the map, with every path active in the kernel and in multipathd
have_map() { [ -n "$(mpio_map)" ]; }
mpio_wait_for "$MAP_WAIT" have_map
map=$(mpio_map)
have_all_paths() { [ "$(mpio_dm_paths "$map")" = "$PATHS 0" ] && [ "$(mpio_mpathd_paths)" = "$PATHS 0" ]; }
[ -n "$map" ] && mpio_wait_for "$MAP_WAIT" have_all_paths
mpio_expect map_paths "$PATHS active" "$( [ -n "$map" ] && set -- $(mpio_dm_paths "$map") && echo "$1 active" || echo no_map)"
if [ -z "$map" ] || ! have_all_paths; then
	mpio_block multipath-before multipath -ll
	return 0
fi
dev=/dev/mapper/$map
mpio_expect dev_node present "$([ -b "$dev" ] && echo present || echo missing)"

# 2. a filesystem with data of known checksum, on disk before the pull
mkfs.xfs -f -q "$dev" && mount -t xfs "$dev" /mnt
mpio_expect mounted yes "$(grep -q ' /mnt xfs ' /proc/mounts && echo yes || echo no)"
dd if=/dev/urandom of=/mnt/data bs=1M count="$DATA_MIB" 2>/dev/null
sync
before=$(sha256sum /mnt/data | cut -d' ' -f1)
mpio_block multipath-before multipath -ll

# 3. the host pulls a path (drive_del: the disk stays, every command to it fails)
if mpio_signal pull-path; then mpio_check host_pulled PASS ack; else mpio_check host_pulled FAIL no_ack; fi

# 4. I/O after the pull must succeed through the remaining path
if timeout 30 dd if=/dev/urandom of=/mnt/after bs=64k count=16 conv=fsync 2>/dev/null; then
	mpio_check io_after_pull PASS ok
else
	mpio_check io_after_pull FAIL "exit_$?"
fi

# 5. the kernel sees one path failed, the others active
want="$((PATHS - 1)) 1"
kernel_sees_failure() { [ "$(mpio_dm_paths "$map")" = "$want" ]; }
mpathd_sees_failure() { [ "$(mpio_mpathd_paths)" = "$want" ]; }
mpio_wait_for "$FAIL_WAIT" kernel_sees_failure
set -- $(mpio_dm_paths "$map")
mpio_expect kernel_paths "$((PATHS - 1))_active_1_failed" "${1}_active_${2}_failed"

# 6. the data survives: re-read from the device, not the page cache (multipathd, which
# hears of the failure through udev or its next path check, catches up meanwhile)
echo 3 > /proc/sys/vm/drop_caches
after=$(timeout 30 sha256sum /mnt/data 2>/dev/null | cut -d' ' -f1)
mpio_expect data_intact "$before" "${after:-unreadable}"

# 7. multipathd agrees with the kernel
mpio_wait_for "$FAIL_WAIT" mpathd_sees_failure
set -- $(mpio_mpathd_paths)
mpio_expect multipathd_paths "$((PATHS - 1))_active_1_failed" "${1}_active_${2}_failed"

mpio_block multipath-after multipath -ll
timeout 30 umount /mnt
mpio_expect umount ok "$( grep -q ' /mnt ' /proc/mounts && echo busy || echo ok)"
