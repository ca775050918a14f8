# shellcheck shell=sh
#: description: >-
#:   Test only: I/O to a suspended multipath map blocks in the kernel, so the step that
#:   issues it outlives its deadline; the host must take a task dump and name the step.
#: env: {MAP_WAIT: 30}
#: steps: {map: 40, write_to_suspended_map: 2}
# Test only: a step that hangs in the kernel (D state), not in a shell loop.
mpio_step map
mpio_wait_for "$MAP_WAIT" mpio_have_map 0
map=$(mpio_lun_map 0)
# settled first: multipathd reloads a map it has just made, and a reload resumes it
mpio_settle map_paths "$map" 2 0 "$MAP_WAIT"
if dmsetup suspend "$map"; then mpio_check suspended PASS "$map"; else mpio_check suspended FAIL "$map"; fi
mpio_step write_to_suspended_map
dd if=/dev/zero of="/dev/mapper/$map" bs=4k count=1 oflag=direct
mpio_check write_returned FAIL "it should have hung"
