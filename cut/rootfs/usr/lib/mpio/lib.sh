# Helpers for the guest side of rapido-mpio, sourced by /init and by scenario scripts.
# The host talks to the guest on its own channel, /dev/ttyS1 (fd 3 after mpio_open): lines
# starting with @@MPIO: go out, acknowledgements come in. Each line is echoed on the console
# (ttyS0) for the human reading the serial log; the host never parses the console for them.

MPIO_CHECKS=/run/mpio/checks

mpio_open() {
	stty -F /dev/ttyS1 raw -echo 2>/dev/null
	exec 3<>/dev/ttyS1
}

mpio_say() {
	echo "@@MPIO:$*" >&3
	echo "@@MPIO:$*"
}

mpio_log() { echo "mpio: $*"; }

# mpio_check NAME PASS|FAIL OBSERVED: record one check; OBSERVED is squeezed into one word
mpio_check() {
	name=$1 status=$2
	shift 2
	observed=$(echo "$*" | tr -s ' \t\n,=' '_' | sed 's/_$//')
	[ -n "$observed" ] || observed=-
	mkdir -p "${MPIO_CHECKS%/*}"
	echo "$name=$status:$observed" >> "$MPIO_CHECKS"
	mpio_say "CHECK $name $status $observed"
}

# mpio_expect NAME EXPECTED OBSERVED: a check that passes when both are equal
mpio_expect() {
	if [ "$2" = "$3" ]; then mpio_check "$1" PASS "$3"; else mpio_check "$1" FAIL "$3 (want $2)"; fi
}

# mpio_verdict: the one machine-readable line the host turns into the exit code
mpio_verdict() {
	result=PASS
	[ -s "$MPIO_CHECKS" ] || { mpio_check scenario_ran FAIL no_checks_recorded; }
	grep -q '=FAIL:' "$MPIO_CHECKS" && result=FAIL
	mpio_say "VERDICT $MPIO_SCENARIO $result $(tr '\n' ' ' < "$MPIO_CHECKS")"
}

# mpio_signal EVENT: ask the host to act (see host: in the scenario file) and wait for its ack
mpio_signal() {
	mpio_say "EVENT $1"
	reply=
	read -r -t "${ACK_TIMEOUT:-60}" reply <&3
	if [ "$reply" = "mpio-ack $1" ]; then
		return 0
	fi
	mpio_log "no ack for $1 (got '${reply}')"
	return 1
}

# mpio_block NAME COMMAND...: command output between markers, saved by the host as NAME.txt
mpio_block() {
	name=$1
	shift
	mpio_say "BEGIN $name"
	"$@" 2>&1 | while IFS= read -r line; do mpio_say "LINE $name $line"; done
	mpio_say "STOP $name"
}

# mpio_uptime_cs: seconds since boot, in hundredths (no fork: /proc/uptime says "12.34 ...")
mpio_uptime_cs() {
	read -r up _ < "${MPIO_UPTIME_FILE:-/proc/uptime}"
	# "0.07": the 1 in front keeps "07" from being read as octal
	echo $((${up%.*} * 100 + 1${up#*.} - 100))
}

# mpio_wait_for SECONDS COMMAND...: poll every 0.1 s until COMMAND succeeds; the deadline is
# on the clock, not a count of tries, since each try itself takes time under TCG
mpio_wait_for() {
	end=$(($(mpio_uptime_cs) + $1 * 100))
	shift
	while ! "$@" >/dev/null 2>&1; do
		[ "$(mpio_uptime_cs)" -lt "$end" ] || return 1
		sleep 0.1
	done
}

# mpio_dm_paths MAP: "<active> <failed>" path counts from the kernel's own view (dmsetup)
mpio_dm_paths() {
	dmsetup status "$1" | awk '{
		for (i = 1; i < NF; i++)
			if ($i ~ /^[0-9]+:[0-9]+$/) { if ($(i + 1) == "A") a++; else if ($(i + 1) == "F") f++ }
	} END { print a + 0, f + 0 }'
}

# mpio_mpathd_paths: "<active> <failed>" path counts as multipathd sees them
mpio_mpathd_paths() {
	multipathd show paths raw format "%t %T" | awk '
		$1 == "active" && $2 == "ready" { a++ }
		$1 == "failed" || $2 == "faulty" || $2 == "shaky" { f++ }
		END { print a + 0, f + 0 }'
}

# mpio_map: name of the first multipath map, empty if there is none
mpio_map() {
	dmsetup ls --target multipath 2>/dev/null | awk 'NR == 1 && $1 != "No" { print $1 }'
}
