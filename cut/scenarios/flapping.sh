# shellcheck shell=sh
#: description: >-
#:   The host flaps one of two paths FLAPS times on a timer (drive_del; PERIOD/2 s later the
#:   dead device is removed and the path comes back as a new device at the same address;
#:   every PERIOD s) while fio writes crc32c-checksummed blocks with direct I/O to XFS on the
#:   map and reads them back, run after run, from before the first failure until after the
#:   path's last return. fio must see no I/O error and no bad block; the guest must see the
#:   path come back FLAPS times; then the kernel and multipathd must agree that every path is
#:   active, and keep agreeing.
#: topology: {luns: 1, paths: 2}
#: image: mpio-fio  # mpio plus fio
#: env:
#:   FLAPS: 3          # how many times the path fails and comes back
#:   PERIOD: 4         # seconds from one failure to the next; the path is down for half of it
#:   FLAP_PATH: 0      # which path of LUN 0 flaps (not PATH: that one is the shell's)
#:   OTHER: up         # the other path: up, or failed (the host fails it before the flaps,
#:                     # so nothing carries the I/O while the flapped path is down: a
#:                     # negative control)
#:   FIO_MIB: 8        # each fio run writes this many MiB in 4 KiB blocks, then verifies them
#:   DATA_MIB: 1       # data written before (fio's own checksums are this scenario's data check)
#:   MAP_WAIT: 30      # seconds for the map to show all paths, settled
#:   FLAP_WAIT: 30     # seconds past the schedule's end (FLAPS x PERIOD) for the path's last
#:                     # return to show in the guest
#:   SETTLE_WAIT: 30   # seconds for every path to be active in both views, settled
#: # flap: seconds past the schedule's own length, FLAPS x PERIOD (added in the step)
#: steps: {setup: 90, flap: 45, paths_after_flaps: 40, writer: 60, umount: 40}

# 1. the map, every path up in the kernel and in multipathd, settled, with XFS
mpio_step setup
mpio_map_with_xfs 0 "$MPIO_PATHS" "$MAP_WAIT" || return 0
map=$(mpio_lun_map 0)
hctl=$(mpio_hctl 0 "$FLAP_PATH")

# 2. the writer: fio runs one after the other until told to stop; each writes FIO_MIB MiB
# at random offsets with direct I/O (libaio, 4 in flight), then reads every block back and
# checks its crc32c. One terse line per run (field 5 the error, 6 KiB read, 47 KiB written)
# and its stderr (where a bad block is named) are kept.
fio_dir=/tmp/fio
mkdir -p "$fio_dir"
fio_runs() {
	n=0
	while [ ! -e "$fio_dir/stop" ]; do
		n=$((n + 1))
		fio --name=flapping --filename=/mnt/fio --size="${FIO_MIB}M" --bs=4k --rw=randwrite \
			--direct=1 --ioengine=libaio --iodepth=4 --verify=crc32c --do_verify=1 \
			--output-format=terse --terse-version=3 --output="$fio_dir/$n.terse" \
			2> "$fio_dir/$n.err"
		rc=$?
		echo "$n $rc" >> "$fio_dir/exits"
		[ "$rc" = 0 ] || sleep 0.2 # a filesystem that shut down fails at once: no busy loop
	done
}
fio_runs &
writer=$!

# 3. with fio in flight, the host starts the schedule; the request is acknowledged at once
# and the guest goes on while the host fails and restores the path. The path is back for
# the last time when its SCSI address has been attached FLAPS times more (each return is a
# new device; the kernel says "Attached SCSI disk" for each).
# shellcheck disable=SC2154 # MPIO_STEP_flap: the declared deadline, in scenario.env
mpio_step flap "$((MPIO_STEP_flap + FLAPS * PERIOD))"
sleep 1
if [ "$OTHER" = failed ]; then
	for p in $(seq 0 $((MPIO_PATHS - 1))); do
		[ "$p" = "$FLAP_PATH" ] || mpio_fault fail_path 0 "$p"
	done
fi
attached() { dmesg | grep -c "sd $hctl: \[sd[a-z]*\] Attached SCSI disk"; }
began=$(mpio_uptime_cs)
mpio_fault flap_path 0 "$FLAP_PATH" "$PERIOD" "$FLAPS"
acked=$(($(mpio_uptime_cs) - began))
# not a stopwatch (a loaded TCG guest can take a second to fork): the schedule must not
# have held the ack back until it was over, so the path has not come back FLAPS times yet
early=$(($(attached) - 1))
if [ "$early" -lt "$FLAPS" ]; then
	mpio_check flap_acked PASS "acked in ${acked}0 ms, after $early of $FLAPS returns"
else
	mpio_check flap_acked FAIL "acked in ${acked}0 ms, after all $FLAPS returns: the schedule blocked the guest"
fi
returned() { [ "$(attached)" -ge $((FLAPS + 1)) ]; }
mpio_wait_for $((FLAPS * PERIOD + FLAP_WAIT)) returned
back=$(($(attached) - 1))
failing=$(dmesg | awk '/rapido-mpio: scenario .* starts/ { on = 1 } on && /Failing path/' | wc -l)
took=$((($(mpio_uptime_cs) - began) / 100))
seen="$back returns in ${took}s (path $FLAP_PATH at $hctl; the kernel failed a path $failing times)"
if [ "$back" = "$FLAPS" ]; then mpio_check path_returned PASS "$seen"; else mpio_check path_returned FAIL "$seen (want $FLAPS)"; fi

# 4. the kernel and multipathd agree that every path is active, and keep agreeing, while
# fio still writes
mpio_step paths_after_flaps
mpio_settle paths_after_flaps "$map" "$MPIO_PATHS" 0 "$SETTLE_WAIT"
mpio_block multipath-after multipath -ll

# 5. the writer stops after its current run; every run must have ended well: exit 0, no
# error, each block read back with its checksum
mpio_step writer
touch "$fio_dir/stop"
wait "$writer"
observed=$(cat "$fio_dir"/*.terse 2>/dev/null | awk -F';' '$1 == "3" {
	if ($5 != 0) { errs++; if (!first) first = $5 }
	rkb += $6; wkb += $47; n++
} END { printf "%d %d %d %d %d", n, errs, first, wkb / 1024, rkb / 1024 }')
read -r terse errs first wmib rmib <<EOF
$observed
EOF
runs=$(wc -l < "$fio_dir/exits")
failed=$(awk '$2 != 0' "$fio_dir/exits" | wc -l)
bad=$(cat "$fio_dir"/*.err 2>/dev/null | grep -c 'verify failed\|bad magic\|bad header\|verify:')
summary="$runs runs, $failed exit non-zero, err $first ($errs runs with an error), $bad bad blocks, $wmib MiB written, $rmib MiB verified"
if [ "$failed" = 0 ] && [ "$errs" = 0 ] && [ "$bad" = 0 ] && [ "$terse" = "$runs" ] && [ "$wmib" -ge "$FIO_MIB" ]; then
	mpio_check fio_clean PASS "$summary"
else
	mpio_check fio_clean FAIL "$summary"
	cat "$fio_dir"/*.err 2>/dev/null | head -n 20 | mpio_send fio-errors
fi

mpio_step umount
mpio_umount
