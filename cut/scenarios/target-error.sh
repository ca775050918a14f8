# shellcheck shell=sh
#: description: >-
#:   A target error, the same on every path, is not a path error: the LUN itself fails
#:   writes to one sector with a thin pool's out-of-space (ENOSPC: SPACE ALLOCATION FAILED,
#:   BLK_STS_NOSPC) and reads of another with a medium error (ENODATA: UNRECOVERED READ
#:   ERROR, BLK_STS_MEDIUM). Each I/O there must get its error at once, through whichever
#:   path round-robin chose; no path may fail (both views all active and settled, no fail
#:   count grown, no "Failing path" in the kernel log); other I/O to the map goes on and
#:   the XFS data reads back intact.
#: topology: {luns: 1, paths: 2, lun_mib: 320}
#: # in XFS's free space on LUN 0: mkfs.xfs makes 4 allocation groups of 80 MiB there, puts
#: # its log in the third and writes the device's end; the files land in the first. So
#: # nothing but the steps touches 120 and 124 MiB, in the second.
#: lun_errors:
#:   - {lun: 0, op: write, errno: ENOSPC, sector: 245760}
#:   - {lun: 0, op: read, errno: ENODATA, sector: 253952}
#: # the kernel's lines for them, named (Debian's kernel) or numbered (no SCSI_CONSTANTS)
#: kernel_log_allow:
#:   - "Sense Key : (Data Protect|Medium Error|0x7|0x3) "
#:   - "Add. Sense: (Space allocation failed write protect|Unrecovered read error)"
#:   - "ASC=0x(27 ASCQ=0x7|11 ASCQ=0x0) "
#:   - "critical (space allocation|medium) error, dev"
#: env:
#:   ERRORS: ENOSPC ENODATA  # which declared errors the steps meet, in order
#:   TRIES: 4          # I/Os at each erroring sector: round-robin sends them to every path
#:   ERROR_WAIT: 2     # seconds each may take to fail (a target error is not retried)
#:   PULL: none        # a negative control: the path of LUN 0 the host fails first
#:   MAP_WAIT: 30      # seconds for the map to show both paths, settled
#:   FAIL_WAIT: 15     # seconds for the paths to settle after the errors
#: steps: {map_and_filesystem: 90, target_error: 60, paths_after_error: 25,
#:         io_after_error: 70, umount: 40}

# 1. the map, both paths up in the kernel and in multipathd, settled, with XFS and data
mpio_step map_and_filesystem
mpio_map_with_xfs 0 2 "$MAP_WAIT" || return 0
map=$(mpio_lun_map 0)
fails_before=$(mpio_fail_count "$map")

# 2. each I/O at an erroring sector, straight to the map with direct I/O, gets the LUN's
# error, and at once: dm-multipath hands a target error back instead of failing the path
# and retrying on another (which would fail the same way, and then the map)
mpio_step target_error
if [ "$PULL" != none ]; then
	mpio_fault fail_path 0 "$PULL"
fi
for error in $ERRORS; do
	name=target_error_$(echo "$error" | tr '[:upper:]' '[:lower:]')
	case $error in
	ENOSPC) want="No space left on device" ;;
	ENODATA) want="No data available" ;;
	*) mpio_check "$name" FAIL "the steps know no message for $error"; continue ;;
	esac
	if ! where=$(mpio_lun_error 0 "$error"); then
		mpio_check "$name" FAIL "LUN 0 declares no $error"
		continue
	fi
	op=${where% *} sector=${where#* }
	got=0 slowest=0 seen=
	mpio_io_snapshot "before-$error" "$map"
	for _ in $(seq "$TRIES"); do
		t0=$(mpio_uptime_cs)
		if [ "$op" = write ]; then
			out=$(timeout 30 dd if=/dev/zero of="/dev/mapper/$map" bs=4k count=1 seek=$((sector / 8)) oflag=direct 2>&1)
		else
			out=$(timeout 30 dd if="/dev/mapper/$map" of=/dev/null bs=4k count=1 skip=$((sector / 8)) iflag=direct 2>&1)
		fi
		rc=$?
		cs=$(($(mpio_uptime_cs) - t0))
		[ "$cs" -gt "$slowest" ] && slowest=$cs
		message=$(echo "$out" | sed -n 's/^dd: .*: //p' | head -n 1)
		if [ "$rc" != 0 ] && [ "$message" = "$want" ]; then
			got=$((got + 1))
		else
			seen="$seen; exit $rc ${message:-no error}"
		fi
	done
	took="slowest $((slowest / 100)).$((slowest / 10 % 10))$((slowest % 10))s"
	# which paths the errors came back from (SCSI's own error count of each path's device)
	mpio_io_snapshot "after-$error" "$map"
	paths=$(mpio_io_errors "before-$error" "after-$error")
	observed="$error $op sector $sector: $got/$TRIES failed with $want, $took, errors by path $paths$seen"
	if [ "$got" = "$TRIES" ] && [ "$slowest" -le $((ERROR_WAIT * 100)) ]; then
		mpio_check "$name" PASS "$observed"
	else
		mpio_check "$name" FAIL "$observed (want $TRIES/$TRIES within ${ERROR_WAIT}s)"
	fi
done

# 3. no path failed: both views show every path active and keep doing so, the kernel's fail
# counts did not grow and it logged no "Failing path" for the map
mpio_step paths_after_error
mpio_settle paths_after_error "$map" 2 0 "$FAIL_WAIT"
fails_after=$(mpio_fail_count "$map")
failing=$(mpio_failing_paths "$map")
observed="fail_count $fails_before>$fails_after, kernel failed path: ${failing:-none}"
if [ "$fails_after" = "$fails_before" ] && [ -z "$failing" ]; then
	mpio_check no_path_failed PASS "$observed"
else
	mpio_check no_path_failed FAIL "$observed"
fi

# 4. other I/O to the map goes on: a write through XFS elsewhere, and the data reads back
mpio_step io_after_error
t0=$(mpio_uptime_cs)
timeout 30 dd if=/dev/urandom of=/mnt/after bs=64k count=16 oflag=direct conv=fsync 2>/dev/null
rc=$?
cs=$(($(mpio_uptime_cs) - t0))
observed="1 MiB through XFS, exit $rc in $((cs / 100)).$((cs / 10 % 10))$((cs % 10))s"
if [ "$rc" = 0 ]; then mpio_check io_after_error PASS "$observed"; else mpio_check io_after_error FAIL "$observed"; fi
mpio_check_data data_intact
mpio_block multipath-after multipath -ll

mpio_step umount
mpio_umount
