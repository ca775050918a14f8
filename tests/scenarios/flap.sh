# shellcheck shell=sh
#: description: >-
#:   Test only: the host flaps path 0 twice on a timer (fail, restore 1 s later, every 2 s)
#:   while the guest keeps writing; the guest is not held up, and at the end both paths are
#:   back and active in both views.
#: topology: {luns: 1, paths: 2}
#: env: {MAP_WAIT: 30}
#: steps: {setup: 90, flap: 40, after_flaps: 60}
mpio_step setup
mpio_map_with_xfs 0 2 "$MAP_WAIT" || return 0
map=$(mpio_lun_map 0)

mpio_step flap
began=$(mpio_uptime_cs)
mpio_fault flap_path 0 0 2 2
acked=$(($(mpio_uptime_cs) - began))
if [ "$acked" -lt 100 ]; then mpio_check flap_acked_at_once PASS "${acked}0 ms"; else mpio_check flap_acked_at_once FAIL "${acked}0 ms"; fi
errors=0 writes=0
while [ "$(mpio_uptime_cs)" -lt $((began + 500)) ]; do
	dd if=/dev/urandom of=/mnt/flap bs=4k count=64 oflag=direct 2>/dev/null || errors=$((errors + 1))
	writes=$((writes + 1))
done
mpio_expect io_during_flaps "0 errors" "$errors errors"

mpio_step after_flaps
mpio_settle paths_after_flaps "$map" 2 0 20
mpio_check_data data_intact
mpio_umount
