# shellcheck shell=sh
# Test only: a step that hangs in the kernel (D state), not in a shell loop.
mpio_step map $((MAP_WAIT + 10))
have_map() { map=$(mpio_map); [ -n "$map" ] && [ -b "/dev/mapper/$map" ]; }
mpio_wait_for "$MAP_WAIT" have_map
map=$(mpio_map)
if dmsetup suspend "$map"; then mpio_check suspended PASS "$map"; else mpio_check suspended FAIL "$map"; fi
mpio_step write_to_suspended_map 2
dd if=/dev/zero of="/dev/mapper/$map" bs=4k count=1 oflag=direct
mpio_check write_returned FAIL "it should have hung"
