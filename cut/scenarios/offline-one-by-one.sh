# shellcheck shell=sh
#: description: >-
#:   systemd's multipath storage test in this project's terms: 16 LUNs x 4 paths, every map
#:   present with all its paths running; XFS on LUN 0, whose paths are set offline one at a
#:   time in a random order (the seed is printed and saved in offline-order.txt; SEED=N
#:   replays it), down to the last. After each, the path counts must settle to what is
#:   left, and the data must read back and take new writes.
#: topology: {luns: 16, paths: 4}
#: env:
#:   SEED: random       # or a number, to replay an order
#:   KEEP: 1            # paths of LUN 0 left online at the end
#:   DATA_MIB: 2
#:   MAP_WAIT: 60
#:   FAIL_WAIT: 15
#: steps: {maps: 150, filesystem: 60, offline: 60, umount: 40}

# every LUN has its map, and every path of every map is up in both views, settled
mpio_step maps
all_maps() {
	for l in $(seq 0 $((MPIO_LUNS - 1))); do mpio_have_map "$l" || return 1; done
}
mpio_wait_for "$MAP_WAIT" all_maps
count=0
for l in $(seq 0 $((MPIO_LUNS - 1))); do mpio_have_map "$l" && count=$((count + 1)); done
mpio_expect maps "$MPIO_LUNS maps" "$count maps"
mpio_settle all_paths "" $((MPIO_LUNS * MPIO_PATHS)) 0 "$MAP_WAIT"

mpio_step filesystem
mpio_map_with_xfs 0 "$MPIO_PATHS" "$MAP_WAIT" || return 0
map=$(mpio_lun_map 0)

# LUN 0's paths in a seeded random order, all but the last KEEP
order_seed=$SEED
[ "$order_seed" != random ] || order_seed=$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')
order=$(mpio_shuffle "$order_seed" "$MPIO_PATHS" | head -n $((MPIO_PATHS - KEEP)) | tr '\n' ' ')
mpio_log "offline order: $order(seed $order_seed; SEED=$order_seed replays it)"
mpio_block offline-order echo "seed=$order_seed order=$order"

k=0
for p in $order; do
	k=$((k + 1))
	mpio_step offline
	mpio_offline_path 0 "$p"
	mpio_settle "paths_after_offline_$k" "$map" $((MPIO_PATHS - k)) "$k" "$FAIL_WAIT"
	# the data reads back from the device, and new data goes through the paths left
	now_sum=$(mpio_data_read)
	timeout 30 dd if=/dev/urandom of="/mnt/after-$k" bs=64k count=8 oflag=direct conv=fsync 2>/dev/null
	written=$?
	if [ "$now_sum" = "$(mpio_data_written)" ] && [ "$written" = 0 ]; then
		mpio_check "io_after_offline_$k" PASS "path $p offline, data intact, write ok"
	else
		mpio_check "io_after_offline_$k" FAIL "path $p offline: data $now_sum (want $(mpio_data_written)), write exit $written"
	fi
done

mpio_step umount
mpio_umount
