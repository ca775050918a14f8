# shellcheck shell=sh
#: description: >-
#:   Every path is pulled while a writer with a known checksum runs, under no_path_retry
#:   queue. The writer must block without an error while the map queues (queue_if_no_path);
#:   then a path comes back as a new device, which makes multipathd reload the map with the
#:   I/O queued. The writer must then complete without an error, and its data must verify.
#: topology: {luns: 1, paths: 2}
#: multipath: |
#:   defaults {
#:   	no_path_retry queue
#:   }
#: env:
#:   EXPECT: queue      # queue: the writer blocks, then completes; fail: it gets I/O errors
#:                      # and the filesystem shuts down (no_path_retry fail); timeout: it
#:                      # blocks, then gets them once the kernel's queueing timeout ends
#:                      # the queueing, and the filesystem shuts down
#:   NOPATH_TIMEOUT: 0  # dm_multipath's queue_if_no_path_timeout_secs for the run (0: off)
#:   FAULT: fail_path   # fail_path (host: drive_del) or offline (the guest's sysfs)
#:   PAYLOAD_MIB: 16    # the writer's data (4 KiB direct writes: it is still running when
#:                      # the last path goes)
#:   DATA_MIB: 1
#:   MAP_WAIT: 30
#:   FAIL_WAIT: 15      # seconds for every path to be down in both views, settled
#:   HOLD: 3            # queue: seconds the writer must stay blocked with every path down
#:   ERROR_WAIT: 20     # fail: seconds within which the writer must get its error
#: steps: {map_and_filesystem: 90, fault: 35, all_paths_down: 45, restore: 40,
#:         after_restore: 90, umount: 40}

mpio_step map_and_filesystem
mpio_map_with_xfs 0 2 "$MAP_WAIT" || return 0
map=$(mpio_lun_map 0)
dd if=/dev/urandom of=/run/payload bs=1M count="$PAYLOAD_MIB" 2>/dev/null
payload_sum=$(sha256sum /run/payload | cut -d' ' -f1)

# the first path goes, the writer starts, the last path goes while it runs
mpio_step fault
# the kernel's own way out of queueing when multipathd does not come (dm-mpath.c)
[ "$NOPATH_TIMEOUT" = 0 ] ||
	echo "$NOPATH_TIMEOUT" > /sys/module/dm_multipath/parameters/queue_if_no_path_timeout_secs
pull() {
	case $FAULT in
	offline) mpio_offline_path 0 "$1" ;;
	*) mpio_fault fail_path 0 "$1" ;;
	esac
}
# writer_ended: true once the writer has ended, its exit status then in writer_exit;
# writer_wait: until it ends
writer_exit=
writer_ended() {
	[ -n "$writer_exit" ] && return 0
	kill -0 "$writer" 2>/dev/null && return 1
	wait "$writer"
	writer_exit=$?
}
writer_wait() { writer_ended || { wait "$writer"; writer_exit=$?; }; }
pull 0
# (its end on the guest's clock, for when its error came)
(
	dd if=/run/payload of=/mnt/payload bs=4k oflag=direct conv=fsync 2>/run/mpio/writer.err
	rc=$?
	mpio_uptime_cs > /run/mpio/writer.end
	exit "$rc"
) &
writer=$!
pull 1
pulled=$(mpio_uptime_cs)
# in flight: still running, or already ended by the lost paths (with no_path_retry fail
# that takes milliseconds); a writer that ended well had finished before the last pull
if ! writer_ended || [ "$writer_exit" != 0 ]; then
	mpio_check writer_in_flight PASS "every path down under the writer${writer_exit:+ (it ended at once, exit $writer_exit)}"
else
	mpio_check writer_in_flight FAIL "the writer ended well before the last path went (raise PAYLOAD_MIB)"
fi

mpio_step all_paths_down
mpio_settle all_paths_down "$map" 0 2 "$FAIL_WAIT"
mpio_block table-down dmsetup table "$map"
case $EXPECT in
queue)
	mpio_expect queueing queue_if_no_path "$(dmsetup table "$map" | grep -o queue_if_no_path || echo none)"
	sleep "$HOLD"
	if ! writer_ended; then
		mpio_check writer_blocked PASS "blocked ${HOLD}s, no error"
	else
		mpio_check writer_blocked FAIL "writer exited $writer_exit with every path down: $(head -c 80 /run/mpio/writer.err)"
	fi ;;
fail | timeout)
	began=$(mpio_uptime_cs)
	mpio_wait_for "$ERROR_WAIT" writer_ended
	took=$((($(mpio_uptime_cs) - began) / 100))
	# timeout: the error must come from the timer, not before it (the writer held queued
	# for the timeout, counted from the last pull)
	held=$((($(cat /run/mpio/writer.end 2>/dev/null || mpio_uptime_cs) - pulled) / 100)) early=0
	[ "$EXPECT" = timeout ] && [ "$held" -lt $((NOPATH_TIMEOUT - 1)) ] && early=1
	if ! writer_ended; then
		mpio_check writer_failed FAIL "still blocked after ${ERROR_WAIT}s"
	elif [ "$writer_exit" = 0 ]; then
		mpio_check writer_failed FAIL "the writer completed with every path down"
	elif [ "$early" = 1 ]; then
		mpio_check writer_failed FAIL "exit $writer_exit ${held}s after the last path went, before the ${NOPATH_TIMEOUT}s timeout"
	else
		mpio_check writer_failed PASS "exit $writer_exit within ${took}s (${held}s after the last path went): $(head -c 60 /run/mpio/writer.err)"
	fi
	# the filesystem meets the lost paths itself: new metadata must reach the log
	if mpio_requires fs_shutdown writer_failed; then
		touch /mnt/after-error && timeout 20 sync
		if dmesg | grep -q 'Shutting down filesystem\|Filesystem has been shut down'; then
			mpio_check fs_shutdown PASS "xfs shut down"
		else
			mpio_check fs_shutdown FAIL "no xfs shutdown after the I/O errors"
		fi
	fi ;;
esac

# a path comes back (queue: multipathd reloads the map while I/O is queued)
mpio_step restore
case $FAULT in
offline) mpio_online_path 0 1 ;;
*) mpio_fault restore_path 0 1 ;;
esac
mpio_block table-restored dmsetup table "$map"

mpio_step after_restore
case $EXPECT in
queue)
	writer_wait
	mpio_expect writer_completed "exit 0" "exit $writer_exit"
	if mpio_requires payload_intact writer_completed; then
		echo 3 > /proc/sys/vm/drop_caches
		got=$(timeout 30 sha256sum /mnt/payload 2>/dev/null | cut -d' ' -f1)
		mpio_expect payload_intact "$payload_sum" "${got:-unreadable}"
	fi
	mpio_requires data_intact writer_completed && mpio_check_data data_intact ;;
fail | timeout)
	# judged before the restore; a writer still blocked ends now that a path is back
	writer_wait ;;
esac

mpio_step umount
mpio_umount
