# Helpers for the guest side of rapido-mpio, sourced by /init and by scenario scripts.
# The host talks to the guest on its own channel, /dev/ttyS1 (fd 3 after mpio_open): lines
# starting with @@MPIO: go out, acknowledgements come in. Each line is echoed on the console
# (ttyS0) for the human reading the serial log; the host never parses the console for them.
#
# The guest reports what it observed (CHECK lines); the host decides the verdict. The
# guest's own VERDICT line only marks the end and lets the host cross-check its count.

MPIO_RUN=${MPIO_RUN:-/run/mpio}
MPIO_CHECKS=$MPIO_RUN/checks
MPIO_TRACE=${MPIO_TRACE:-/sys/kernel/tracing}
MPIO_TOPOLOGY=${MPIO_TOPOLOGY:-/etc/mpio/topology}

mpio_open() {
	stty -F /dev/ttyS1 raw -echo 2>/dev/null
	exec 3<>/dev/ttyS1
}

mpio_say() {
	echo "@@MPIO:$*" >&3
	echo "@@MPIO:$*"
}

mpio_log() { echo "mpio: $*"; }

# mpio_check NAME PASS|FAIL|SKIP OBSERVED: record one check; OBSERVED is squeezed into one
# word, and should tell a human what happened without opening the log
mpio_check() {
	name=$1 status=$2
	shift 2
	observed=$(echo "$*" | tr -s ' \t\n,=' '_' | sed 's/_$//')
	[ -n "$observed" ] || observed=-
	mkdir -p "$MPIO_RUN"
	echo "$name=$status:$observed" >> "$MPIO_CHECKS"
	mpio_say "CHECK $name $status $observed"
}

# mpio_expect NAME EXPECTED OBSERVED: a check that passes when both are equal
mpio_expect() {
	if [ "$2" = "$3" ]; then mpio_check "$1" PASS "$3"; else mpio_check "$1" FAIL "$3 (want $2)"; fi
}

# mpio_passed NAME: whether check NAME was recorded as PASS
mpio_passed() { grep -q "^$1=PASS:" "$MPIO_CHECKS" 2>/dev/null; }

# mpio_requires NAME PREREQ...: true when every PREREQ check passed; otherwise NAME is
# recorded as skipped (never as PASS: a check whose ground is missing proves nothing)
mpio_requires() {
	name=$1
	shift
	for prereq in "$@"; do
		mpio_passed "$prereq" || { mpio_check "$name" SKIP "$prereq failed"; return 1; }
	done
}

# mpio_step NAME [SECONDS]: the scenario enters step NAME, which must end within SECONDS
# (by default the deadline the scenario declares in its #: steps:). The host holds the
# deadline: past it, it takes a task dump (sysrq w) and names the step.
mpio_step() {
	seconds=${2:-}
	[ -n "$seconds" ] || eval "seconds=\${MPIO_STEP_$1:-60}"
	mpio_say "STEP $1 $seconds"
}

# mpio_verdict: the end marker, with the guest's own reading of its checks for the host to
# cross-check (the host decides; a disagreement is a bug in rapido-mpio)
mpio_verdict() {
	result=PASS
	[ -s "$MPIO_CHECKS" ] || { mpio_check scenario_ran FAIL no_checks_recorded; }
	grep -q '=FAIL:\|=SKIP:' "$MPIO_CHECKS" && result=FAIL
	mpio_say "VERDICT $MPIO_SCENARIO $result $(wc -l < "$MPIO_CHECKS")"
}

# mpio_signal EVENT: ask the host to act (a fault, or END) and wait for its ack.
# Not the read builtin: when a child exits mid-line (a background writer failing on the
# pulled path), busybox ash restarts read on SIGCHLD with a fresh buffer and the bytes it
# already took are lost ('h 0 1' for 'mpio-ack fail_path 0 1'). head is a process of its
# own; the host sends one line per request, so nothing past it is taken.
mpio_signal() {
	mpio_say "EVENT $1"
	reply=$(timeout "${ACK_TIMEOUT:-60}" head -n 1 <&3)
	if [ "$reply" = "mpio-ack $1" ]; then
		return 0
	fi
	mpio_log "no ack for $1 (got '${reply}')"
	return 1
}

# mpio_fault NAME LUN PATH [ARGS...]: a fault the host makes (fail_path L P, remove_path L P,
# restore_path L P, flap_path L P PERIOD COUNT); returns once it has really happened. PATH
# may be a role (mpio_role_paths: active, standby, group:N, ...): the fault then takes
# every path the role names, resolved now.
mpio_fault() {
	case $3 in
	*[!0-9]* | '') ;;
	*) mpio_signal "$*"; return ;;
	esac
	_mf_name=$1 _mf_lun=$2 _mf_role=$3
	shift 3
	_mf_paths=$(mpio_resolve "$_mf_lun" "$_mf_role") || return 1
	for _mf_p in $_mf_paths; do
		mpio_signal "$_mf_name $_mf_lun $_mf_p${*:+ $*}" || return 1
	done
}

# mpio_block NAME COMMAND...: command output between markers, saved by the host as NAME.txt
mpio_block() {
	name=$1
	shift
	mpio_say "BEGIN $name"
	"$@" 2>&1 | while IFS= read -r line; do mpio_say "LINE $name $line"; done
	mpio_say "STOP $name"
}

# mpio_send NAME: stdin as block NAME, on the channel only (for data the console already
# has). One awk, not a read loop: busybox's read builtin takes a byte per system call.
mpio_send() {
	awk -v n="$1" 'BEGIN { print "@@MPIO:BEGIN " n } { print "@@MPIO:LINE " n " " $0 }
		END { print "@@MPIO:STOP " n }' >&3
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

# --- the topology: LUN L, path P (as the scenario declares them) in the guest ------------

# mpio_wwid LUN: the LUN's WWID, which names its map's dm uuid (mpath-WWID)
mpio_wwid() { awk -v l="$1" '$1 == l { print $3; exit }' "$MPIO_TOPOLOGY"; }

# mpio_hctl LUN PATH: the path's SCSI address H:C:T:L; fails while the path is absent
mpio_hctl() {
	tl=$(awk -v l="$1" -v p="$2" '$1 == l && $2 == p { print $4; exit }' "$MPIO_TOPOLOGY")
	for d in /sys/class/scsi_device/*:0:"$tl"; do
		[ -e "$d" ] && { echo "${d##*/}"; return 0; }
	done
	return 1
}

# mpio_path_dev LUN PATH: the path's block device as MAJOR:MINOR
mpio_path_dev() {
	h=$(mpio_hctl "$1" "$2") || return 1
	cat "/sys/class/scsi_device/$h/device/block/"*/dev 2>/dev/null
}

# mpio_lun_map LUN: the name of the LUN's multipath map, empty while there is none
mpio_lun_map() {
	w=$(mpio_wwid "$1")
	dmsetup info -c --noheadings -o name,uuid --separator ' ' 2>/dev/null |
		awk -v u="mpath-$w" '$2 == u { print $1; exit }'
}

# --- path groups, and faults aimed by role ----------------------------------------------
# Which path is "the active one" follows the order udev and multipathd found the paths in,
# so a scenario names the path it means by its role, and the guest resolves it from the
# kernel's own view at that moment.

# mpio_groups MAP: the kernel's path groups of MAP (dmsetup status), one line per path:
# "GROUP STATE DEV PATH_STATE FAIL_COUNT NEXT": GROUP numbered from 1 as dm numbers them,
# STATE dm's letter for the group (A: the current group, E: enabled, D: bypassed), DEV
# major:minor, PATH_STATE A or F, NEXT the group dm will use next (its "next pg" field)
mpio_groups() {
	dmsetup status --target multipath "$1" 2>/dev/null | awk '{
		i = 4; i += $i + 1; i += $i + 1    # skip the features, then the hardware handler
		groups = $i; next_pg = $(i + 1); i += 2
		for (g = 1; g <= groups; g++) {
			# the group: its state, the selector status (a count, then that many words:
			# "0" for most, "2 W T" for historical-service-time), #paths, #info args
			state = $i; i += 2 + $(i + 1); paths = $i; info = $(i + 1); i += 2
			for (p = 0; p < paths; p++) { print g, state, $i, $(i + 1), $(i + 2), next_pg; i += 3 + info }
		}
	}'
}

# mpio_active_group MAP: the group dm sends I/O to: the current one (A), or before any I/O
# has chosen one (after a load or a switchgroup), the one dm will use next
mpio_active_group() {
	mpio_groups "$1" | awk '$2 == "A" { a = $1 } { n = $6 } END { print a ? a : n + 0 }'
}

# mpio_group_devs MAP [GROUP]: the devices of a path group of MAP (by default the active
# one), as "8:0+8:16". A group is known by its paths, not its number: multipathd numbers
# the groups afresh whenever it reloads the map (a path added or removed)
mpio_group_devs() {
	mpio_groups "$1" | awk -v g="${2:-$(mpio_active_group "$1")}" \
		'$1 == g { d = d (d ? "+" : "") $3 } END { print d }'
}

# mpio_check_group NAME MAP same|moved|has DEVS: the kernel's active group of MAP now is
# the group of DEVS (same), is another one (moved), or holds every path of DEVS (has)
mpio_check_group() {
	_cg_now=$(mpio_group_devs "$2")
	_cg_seen="active group $(mpio_active_group "$2") ($_cg_now), $3 $4; groups $(mpio_groups "$2" |
		awk '{ printf "%s%s:%s:%s", (NR > 1 ? " " : ""), $1, $2, $3 }')"
	_cg_ok=
	case $3 in
	same) [ "$_cg_now" = "$4" ] && _cg_ok=1 ;;
	moved) [ -n "$_cg_now" ] && [ "$_cg_now" != "$4" ] && _cg_ok=1 ;;
	has)
		_cg_ok=1
		for _cg_d in $(echo "$4" | tr '+' ' '); do
			case "+$_cg_now+" in *"+$_cg_d+"*) ;; *) _cg_ok= ;; esac
		done ;;
	esac
	if [ -n "$_cg_ok" ] && [ -n "$4" ]; then
		mpio_check "$1" PASS "$_cg_seen"
	else
		mpio_check "$1" FAIL "$_cg_seen: not so"
	fi
}

# mpio_check_prio_groups NAME MAP: the groups of MAP follow multipathd's path priorities:
# one priority per group, more than one group, and the active group holds the best. Not
# their order in the table: that is the order of the last load, and multipathd may reach
# the best group by a switch instead of a reload (seen, with failback immediate).
mpio_check_prio_groups() {
	_pg=$({ multipathd show paths raw format "%D %p" 2>/dev/null; echo --; mpio_groups "$2"; } |
		awk -v active="$(mpio_active_group "$2")" '
		$0 == "--" { groups = 1; next }
		!groups { prio[$1] = $2; next }
		{
			if (!($1 in gp)) { gp[$1] = prio[$3]; order[n++] = $1 }
			else if (gp[$1] != prio[$3]) bad = bad " group " $1 " mixes priorities"
			seen[$1] = seen[$1] (seen[$1] ? "+" : "") $3 "=" prio[$3]
			if (best == "" || prio[$3] > best) best = prio[$3]
		}
		END {
			for (i = 0; i < n; i++) {
				g = order[i]; out = out (i ? " " : "") g ":" (g == active ? "active" : "standby") ":" seen[g]
			}
			if (n < 2) bad = bad " one group"
			if (gp[active] != best) bad = bad " the active group is not the best"
			print (bad ? "FAIL" : "PASS") " " out (bad ? ";" bad : "")
		}')
	mpio_check "$1" "${_pg%% *}" "${_pg#* }"
}

# mpio_check_group_io NAME MAP FROM TO [DEVS]: I/O follows a group of MAP (DEVS, as
# mpio_group_devs gives it; by default the kernel's active group now): between snapshots
# FROM and TO its paths carry at least IO_MIN requests between them, and no other path of
# MAP gets more than IO_MARGIN
mpio_check_group_io() {
	_gi=$(awk -v group="+${5:-$(mpio_group_devs "$2")}+" -v margin="${IO_MARGIN:-2}" -v min="${IO_MIN:-8}" '
		FILENAME == ARGV[1] { split($2, r, "="); before[$1] = r[2]; next }
		{
			split($2, r, "="); d = r[2] - before[$1]
			if (index(group, "+" $1 "+")) { inside = inside " " $1 " +" d; carried += d; next }
			outside = outside " " $1 " +" d
			if (d > margin) bad = bad " " $1 " outside the group got " d " (max " margin ")"
		}
		END {
			if (carried < min) bad = bad " the group carried " carried + 0 " (min " min ")"
			print (bad ? "FAIL" : "PASS") " group" inside "; others:" (outside ? outside : " none") (bad ? ";" bad : "")
		}' "$MPIO_RUN/io-$3" "$MPIO_RUN/io-$4")
	mpio_check "$1" "${_gi%% *}" "${_gi#* }"
}

# mpio_path_of LUN DEV: the path number P of LUN whose block device is DEV (major:minor)
mpio_path_of() {
	while read -r _po_lun _po_path _; do
		[ "$_po_lun" = "$1" ] && [ "$(mpio_path_dev "$1" "$_po_path")" = "$2" ] &&
			{ echo "$_po_path"; return 0; }
	done < "$MPIO_TOPOLOGY"
	return 1
}

# mpio_role_paths LUN ROLE: the paths (numbers) of LUN a role names, from the kernel's view
# now: a number (that path), active (one path of the active group, one dm has up),
# active-group (every path of it), standby (one up path of a group that is not the
# active one), group:N (every path of group N). Fails, saying why, when there is none.
mpio_role_paths() {
	case $2 in
	*[!0-9]* | '') ;;
	*) echo "$2"; return 0 ;;
	esac
	_rp_map=$(mpio_lun_map "$1")
	[ -n "$_rp_map" ] || { mpio_log "role $2: LUN $1 has no map" >&2; return 1; }
	_rp_active=$(mpio_active_group "$_rp_map")
	_rp_devs=$(mpio_groups "$_rp_map" | awk -v role="$2" -v active="$_rp_active" '
		role == "active" && $1 == active && $4 == "A" { print $3; exit }
		role == "active-group" && $1 == active { print $3 }
		role == "standby" && $1 != active && $4 == "A" { print $3; exit }
		role ~ /^group:[0-9]+$/ && "group:" $1 == role { print $3 }')
	[ -n "$_rp_devs" ] || { mpio_log "role $2: no such path in map $_rp_map (active group $_rp_active)" >&2; return 1; }
	for _rp_d in $_rp_devs; do
		mpio_path_of "$1" "$_rp_d" || { mpio_log "role $2: $_rp_d is no path of LUN $1" >&2; return 1; }
	done
}

# mpio_resolve LUN ROLE...: the paths the roles name, each once, in order; for each role,
# the host records what it resolved to (action "target": the role, the paths, their devices
# and the active group then), so result.json says which path a fault took and why
mpio_resolve() {
	_rs_lun=$1
	shift
	_rs_all=
	for _rs_role in "$@"; do
		_rs_paths=$(mpio_role_paths "$_rs_lun" "$_rs_role") || return 1
		case $_rs_role in
		*[!0-9]*)
			_rs_devs=$(for _rs_p in $_rs_paths; do mpio_path_dev "$_rs_lun" "$_rs_p"; done | tr '\n' '+')
			# on the console through stderr: stdout is the caller's answer
			mpio_say "ACTION target $_rs_role lun=$_rs_lun paths=$(echo "$_rs_paths" | tr '\n' '+' | sed 's/+$//')" \
				"devs=${_rs_devs%+} active_group=$(mpio_active_group "$(mpio_lun_map "$_rs_lun")")" >&2
			;;
		esac
		for _rs_p in $_rs_paths; do
			case " $_rs_all " in *" $_rs_p "*) ;; *) _rs_all="$_rs_all $_rs_p" ;; esac
		done
	done
	echo "${_rs_all# }"
}

# mpio_offline_path / mpio_online_path LUN PATH: a fault made in the guest, as systemd's
# storage test does: SCSI rejects I/O to an offline device before dispatch
# (PATH may be a role, as for mpio_fault)
mpio_offline_path() { _mpio_scsi_states "$1" "$2" offline offline_path; }
mpio_online_path() { _mpio_scsi_states "$1" "$2" running online_path; }
_mpio_scsi_states() {
	_ss_paths=$(mpio_resolve "$1" "$2") && [ -n "$_ss_paths" ] || return 1
	for _ss_p in $_ss_paths; do _mpio_scsi_state "$1" "$_ss_p" "$3" "$4" || return 1; done
}
_mpio_scsi_state() {
	h=$(mpio_hctl "$1" "$2") || { mpio_log "no path $2 of LUN $1"; return 1; }
	echo "$3" > "/sys/class/scsi_device/$h/device/state" || return 1
	mpio_say "ACTION $4 $1 $2 $h"
}

# mpio_path_states MAP: one line per path of MAP, "DEV KERNEL MULTIPATHD", in the table's
# order (DEV is major:minor); MAP "" means every multipath map. A state is A (up), F
# (down), ? (anything else: multipathd's checker still pending, say) or - (that side does
# not list the path). One awk for both views: under TCG every process costs ~20 ms, and a
# sample should be quick.
mpio_path_states() {
	{ dmsetup status --target multipath ${1:+"$1"}; echo --; multipathd show paths raw format "%m %D %t %T"; } 2>/dev/null |
		awk -v map="$1" '
		$0 == "--" { daemon = 1; next }
		!daemon {
			for (i = 1; i < NF; i++)
				if ($i ~ /^[0-9]+:[0-9]+$/) {
					order[n++] = $i
					k[$i] = ($(i + 1) == "A" || $(i + 1) == "F") ? $(i + 1) : "?"
				}
			next
		}
		map == "" ? $1 !~ /^(\[|-|$)/ : $1 == map {
			s = "?"
			if ($3 == "active" && $4 == "ready") s = "A"
			else if ($3 == "failed" && ($4 == "faulty" || $4 == "shaky")) s = "F"
			d[$2] = s
			if (!($2 in k)) order[n++] = $2
		}
		END {
			for (i = 0; i < n; i++)
				print order[i], (order[i] in k ? k[order[i]] : "-"), (order[i] in d ? d[order[i]] : "-")
		}'
}

# mpio_agreement STATES: "ACTIVE FAILED" when the kernel and multipathd agree on every path
# in STATES (mpio_path_states output), else "disagree"; shell builtins only, no process
mpio_agreement() {
	active=0 failed=0
	while read -r _ kernel daemon; do
		if [ "$kernel" != "$daemon" ]; then echo disagree; return; fi
		case $kernel in
		A) active=$((active + 1)) ;;
		F) failed=$((failed + 1)) ;;
		*) echo disagree; return ;;
		esac
	done <<EOF
$1
EOF
	echo "$active $failed"
}

# mpio_transitions FILE: each path's states over the samples in FILE ("at TIME" lines, each
# followed by mpio_path_states output), e.g. "8:0 kernel A>F>A>F multipathd A>F"
mpio_transitions() {
	awk '$1 == "at" { next } {
		if (!($1 in k)) { order[n++] = $1; k[$1] = $2; d[$1] = $3; lk[$1] = $2; ld[$1] = $3; next }
		if ($2 != lk[$1]) { k[$1] = k[$1] ">" $2; lk[$1] = $2 }
		if ($3 != ld[$1]) { d[$1] = d[$1] ">" $3; ld[$1] = $3 }
	} END {
		for (i = 0; i < n; i++) printf "%s%s kernel %s multipathd %s", (i ? "; " : ""), order[i], k[order[i]], d[order[i]]
		print ""
	}' "$1"
}

# mpio_checker_interval: the longest time, in seconds, multipathd's checker may leave a path
# unchecked: max_polling_interval (healthy paths) or polling_interval, whichever is longer
# (the image pins both at 1 s; a scenario may set them otherwise)
mpio_checker_interval() {
	multipathd show config 2>/dev/null | awk '$1 == "polling_interval" && !p { p = $2 }
		$1 == "max_polling_interval" && !m { m = $2 } END { print (m > p ? m : p) }'
}

# multipathd runs with -v3 (/init), so its log has a line each time its checker looks at a
# path: "sda: tur state = up", or "sda: state offline, checker not called". That is the
# checker's own word that it ran, where a time alone would only make it likely (under TCG
# a checker pass every "1 s" was measured at 1.1-1.25 s).
MPIO_DAEMON_LOG=${MPIO_DAEMON_LOG:-}

# mpio_daemon_log_size: where multipathd's log ends now (bytes), 0 without one
mpio_daemon_log_size() {
	if [ -n "$MPIO_DAEMON_LOG" ]; then wc -c < "$MPIO_DAEMON_LOG"; else echo 0; fi
}

# mpio_unconfirmed_since MARK STATES: the paths of STATES (mpio_path_states output, views
# in agreement) whose state multipathd's checker has not confirmed since byte MARK of its
# log, as "8:0 8:16" (empty: its last look at each path agrees with STATES). A look is a
# verdict other than "pending"; it confirms an up path (A) when it says up (or ghost), a
# down one (F) when it says anything else ("down", "offline, checker not called"). A look
# that contradicts STATES does not count: the checker has just seen the path otherwise, and
# the views are about to change. NAMES: multipathd's "DEV NAME" of each path (mpio_names),
# taken once when the views began to agree. Without a log, none: the hold alone then
# stands for it.
mpio_unconfirmed_since() {
	[ -n "$MPIO_DAEMON_LOG" ] || return 0
	{ echo "$2"; echo --; echo "$3"; echo --
		tail -c +"$(($1 + 1))" "$MPIO_DAEMON_LOG"; } 2>/dev/null | awk '
		$0 == "--" { part++; next }
		part == 0 { want[n++] = $1; state[$1] = $2; next }
		part == 1 { name[$1] = $2; next }
		/^[^ ]+: [^ ]+ state = / && $NF != "pending" { sub(/:$/, "", $1); said[$1] = $NF; next }
		/^[^ ]+: state [^ ]+, checker not called/ { sub(/:$/, "", $1); said[$1] = "not-called" }
		END {
			for (i = 0; i < n; i++) {
				d = want[i]; s = said[name[d]]
				up = s == "up" || s == "ghost"
				if (!(d in name) || s == "" || (state[d] == "A") != up) out = out (out ? " " : "") d
			}
			print out
		}'
}

# mpio_names: multipathd's "DEV NAME" (8:0 sda) of every path it knows
mpio_names() { multipathd show paths raw format "%D %d" 2>/dev/null; }

# mpio_settle NAME MAP ACTIVE FAILED SECONDS: a path-state check that judges settled state.
# It passes once the kernel (dmsetup status) and multipathd agree that ACTIVE paths are up
# and FAILED paths down, and multipathd's checker, looking at every path of the map since
# they began to agree, confirmed each one's state (its log says so), so that nothing is
# about to change it; it then reports that value. One sample proves nothing: right after a
# fault the two disagree for a moment (multipathd may reinstate a path the kernel has just
# failed: its checker still reached the dying device), which is normal. The checker's pass
# is the event waited for, not a time: it comes within one checker interval. Without
# multipathd's log the agreement must instead hold for a full interval.
# If the state does not settle within SECONDS it fails with each path's transitions.
# The settled states are kept in $MPIO_RUN/settled for mpio_check_path_io.
mpio_settle() {
	name=$1 map=$2 want="$3 $4"
	hold=0
	if [ -z "$MPIO_DAEMON_LOG" ]; then
		[ -n "$MPIO_CHECKINT" ] || MPIO_CHECKINT=$(mpio_checker_interval)
		hold=$((${MPIO_CHECKINT:-5} * 100 + 20))
	fi
	samples=$MPIO_RUN/settle-$name
	: > "$samples"
	since='' unconfirmed=''
	end=$(($(mpio_uptime_cs) + $5 * 100))
	while :; do
		now=$(mpio_uptime_cs)
		states=$(mpio_path_states "$map")
		printf 'at %s.%02ds\n%s\n' "$((now / 100))" "$((now % 100))" "$states" >> "$samples"
		if [ "$(mpio_agreement "$states")" = "$want" ]; then
			# the names hold while the views agree: a path that came back as a new device
			# would have broken the agreement first
			[ -n "$since" ] || { since=$now; mark=$(mpio_daemon_log_size); names=$(mpio_names); }
			if [ $((now - since)) -ge "$hold" ] && unconfirmed=$(mpio_unconfirmed_since "$mark" "$states" "$names") &&
				[ -z "$unconfirmed" ]; then
				echo "$states" > "$MPIO_RUN/settled"
				mpio_send "settle-$name" < "$samples"
				mpio_check "$name" PASS "$3 active $4 failed"
				return 0
			fi
		else
			since='' unconfirmed=''
		fi
		if [ "$now" -ge "$end" ]; then
			last=$(echo "$states" | awk '$2 == "A" { ka++ } $2 == "F" { kf++ } $3 == "A" { da++ } $3 == "F" { df++ }
				END { printf "kernel %d/%d multipathd %d/%d", ka, kf, da, df }')
			mpio_send "settle-$name" < "$samples"
			mpio_check "$name" FAIL "not settled in ${5}s (want $3 active $4 failed; last active/failed: $last${unconfirmed:+; agreed, but the checker of multipathd has not confirmed $unconfirmed since}): $(mpio_transitions "$samples")"
			return 1
		fi
		sleep 0.1
	done
}

# mpio_shuffle SEED N: 0 .. N-1 in an order that SEED decides (the same seed, the same
# order: a failure can be replayed)
mpio_shuffle() {
	seq 0 $(($2 - 1)) | awk -v seed="$1" 'BEGIN { srand(seed) } { print rand(), $1 }' |
		sort -n | awk '{ print $2 }'
}

# --- common steps ---------------------------------------------------------------------

# mpio_have_map LUN: the LUN's map exists, with its device node
mpio_have_map() { m=$(mpio_lun_map "$1"); [ -n "$m" ] && [ -b "/dev/mapper/$m" ]; }

# mpio_map_with_xfs LUN PATHS SECONDS: wait for the LUN's map; while its paths settle
# (check map_paths: PATHS up, none down) make XFS on it, mount it on /mnt and write
# DATA_MIB MiB of random data to /mnt/data, on disk before anything else happens (its
# sha256 is kept for mpio_check_data). Fails when there is no map, no filesystem, or
# the paths did not settle.
mpio_map_with_xfs() {
	lun=$1
	if ! mpio_wait_for "$3" mpio_have_map "$lun"; then
		mpio_check map_paths FAIL "no map for LUN $lun ($(mpio_wwid "$lun"))"
		return 1
	fi
	map=$(mpio_lun_map "$lun")
	dev=/dev/mapper/$map
	mpio_settle map_paths "$map" "$2" 0 "$3" &
	settling=$!
	mkfs.xfs -f -q "$dev" && mount -t xfs "$dev" /mnt
	mpio_expect mounted yes "$(grep -q ' /mnt xfs ' /proc/mounts && echo yes || echo no)"
	if mpio_passed mounted; then
		dd if=/dev/urandom of=/mnt/data bs=1M count="${DATA_MIB:-4}" 2>/dev/null
		sync
		before=$(sha256sum /mnt/data | cut -d' ' -f1)
	fi
	wait "$settling"
	settled=$?
	mpio_block multipath-before multipath -ll
	[ "$settled" = 0 ] && mpio_passed mounted
}

# mpio_check_data NAME: /mnt/data reads back from the device (not the page cache) with the
# checksum it was written with
mpio_check_data() {
	mpio_requires "$1" mounted || return 1
	mpio_expect "$1" "$(mpio_data_written)" "$(mpio_data_read)"
}

# mpio_data_read: /mnt/data's sha256 as read from the device now, or "unreadable"
mpio_data_read() {
	echo 3 > /proc/sys/vm/drop_caches
	sum=$(timeout 30 sha256sum /mnt/data 2>/dev/null | cut -d' ' -f1)
	echo "${sum:-unreadable}"
}

# mpio_data_written: the sha256 /mnt/data was written with
mpio_data_written() { echo "$before"; }

# mpio_umount: /mnt unmounts (check umount), when it was mounted
mpio_umount() {
	mpio_passed mounted || return 0
	timeout 30 umount /mnt
	mpio_expect umount ok "$(grep -q ' /mnt ' /proc/mounts && echo busy || echo ok)"
}

# --- per-path I/O accounting --------------------------------------------------------------
# Counted where dm-multipath dispatches: the block_rq_remap tracepoint fires for every
# request dm sends to a path, whatever then happens to it. The SCSI device's own counters
# (iorequest_cnt, ioerr_cnt) miss requests SCSI rejects before dispatch (an offline device),
# and count the path checker's probes; they are recorded beside, for a human.

# mpio_trace_start: count dm's dispatches from now on (called once, by /init)
mpio_trace_start() {
	mount -t tracefs tracefs "$MPIO_TRACE" 2>/dev/null
	[ -w "$MPIO_TRACE/events/block/block_rq_remap/enable" ] || return 1
	echo 4096 > "$MPIO_TRACE/buffer_size_kb"
	echo 1 > "$MPIO_TRACE/events/block/block_rq_remap/enable"
	# a bio-based map (queue_mode bio) sends its paths bios, not requests
	echo 1 > "$MPIO_TRACE/events/block/block_bio_remap/enable"
}

# mpio_io_snapshot LABEL MAP: "DEV remapped=N iorequest=N ioerr=N" per path of MAP, kept
# in $MPIO_RUN/io-LABEL and sent to the host as block io-LABEL. One awk reads the trace;
# the counters are read with shell builtins: under TCG each process costs ~20 ms, and a run
# takes four or more snapshots.
mpio_io_snapshot() {
	out=$MPIO_RUN/io-$1
	overrun=0
	for _is_f in "$MPIO_TRACE"/per_cpu/cpu*/stats; do
		[ -r "$_is_f" ] || continue
		while read -r _is_k _is_v; do
			[ "$_is_k" = overrun: ] && overrun=$((overrun + _is_v))
		done < "$_is_f"
	done
	# the map's paths in the table's order, each with the dispatches the trace holds for it
	mpio_path_states "$2" | awk -v trace="$MPIO_TRACE/trace" '{ dev[n++] = $1 }
		END {
			while ((getline line < trace) > 0) {
				m = split(line, f, " ")
				for (i = 1; i < m; i++) if (f[i] == "block_rq_remap:" || f[i] == "block_bio_remap:") { split(f[i + 1], d, ","); c[d[1] ":" d[2]]++ }
			}
			for (i = 0; i < n; i++) print dev[i], c[dev[i]] + 0
		}' | while read -r _is_dev _is_remapped; do
		_is_req=0 _is_err=0
		read -r _is_req 2>/dev/null < "/sys/dev/block/$_is_dev/device/iorequest_cnt"
		read -r _is_err 2>/dev/null < "/sys/dev/block/$_is_dev/device/ioerr_cnt"
		echo "$_is_dev remapped=$_is_remapped iorequest=$((_is_req)) ioerr=$((_is_err)) overrun=$overrun"
	done > "$out"
	mpio_send "io-$1" < "$out"
}

# mpio_expect_up MAP: from now on every path of MAP counts as up for mpio_check_path_io,
# whatever the last settled check found (a path that should be back must carry I/O)
mpio_expect_up() { mpio_path_states "$1" | awk '{ print $1, "A", "A" }' > "$MPIO_RUN/settled"; }

# mpio_check_path_io NAME FROM TO [EACH]: judges the requests dm dispatched to each path
# between snapshots FROM and TO, taken after a settled check. A path that check found down
# may get at most IO_MARGIN of them (the path checker's probes are not dispatched through
# the map, so a good kernel sends it none); the paths found up must carry at least IO_MIN
# between them, and each at least EACH (a reinstated path must carry I/O again).
mpio_check_path_io() {
	name=$1 from=$MPIO_RUN/io-$2 to=$MPIO_RUN/io-$3
	observed=$(awk -v margin="${IO_MARGIN:-2}" -v min="${IO_MIN:-8}" -v each="${4:-0}" '
		FILENAME == ARGV[1] { state[$1] = $2; next }
		FILENAME == ARGV[2] { split($2, r, "="); before[$1] = r[2]; next }
		{
			split($2, r, "="); delta = r[2] - before[$1]
			if ($5 != "overrun=0") bad = bad " trace_buffer_" $5
			if (state[$1] == "F") {
				down = down " down " $1 " +" delta
				if (delta > margin) { bad = bad " down_path_" $1 "_got_" delta "_(max_" margin ")" }
			} else {
				up = up " up " $1 " +" delta; carried += delta
				if (delta < each) bad = bad " up_path_" $1 "_got_" delta "_(min_" each ")"
			}
		}
		END {
			if (carried < min) bad = bad " up_paths_carried_" carried + 0 "_(min_" min ")"
			print (bad ? "FAIL" : "PASS") down up (bad ? ":" bad : "")
		}' "$MPIO_RUN/settled" "$from" "$to")
	mpio_check "$name" "${observed%% *}" "${observed#* }"
}

# mpio_kmsg_mark: a line in the kernel log where the scenario starts; kernel messages after
# it are judged by the host (blktests marks /dev/kmsg the same way)
mpio_kmsg_mark() { echo "rapido-mpio: scenario $MPIO_SCENARIO starts" > /dev/kmsg; }

# mpio_kmsg_send: the kernel log from the mark on, raw (<facility*8+level>[time] text), so
# the host can tell the kernel's own messages (facility 0) from userspace writes
mpio_kmsg_send() {
	dmesg -r | awk '/rapido-mpio: scenario .* starts/ { on = 1 } on' | mpio_send kmsg
}

# mpio_gcov_send: when the kernel counts coverage of dm-multipath and its path selectors
# (rapido-mpio matrix --coverage builds it so) and the host asks for the counters
# (rapido_mpio.gcov=1 on the kernel command line), each file's counters (.gcda in debugfs)
# as block gcov-NAME, base64: the channel carries lines of text
mpio_gcov_send() {
	read -r _gc_cmdline < /proc/cmdline
	case " $_gc_cmdline " in
	*" rapido_mpio.gcov=1 "*) ;;
	*) return 0 ;;
	esac
	grep -q ' /sys/kernel/debug debugfs ' /proc/mounts || mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
	find /sys/kernel/debug/gcov -path '*/drivers/md/dm-*.gcda' 2>/dev/null | while read -r f; do
		case ${f##*/} in
		dm-mpath.gcda | dm-path-selector.gcda | dm-ps-*.gcda)
			_gc_name=${f##*/}
			base64 < "$f" | mpio_send "gcov-${_gc_name%.gcda}" ;;
		esac
	done
}

# --- a LUN's own errors (lun_errors: the same on every path) -------------------------------

MPIO_LUN_ERRORS=${MPIO_LUN_ERRORS:-/etc/mpio/lun-errors}

# mpio_lun_error LUN ERRNO: "OPERATION SECTOR" of the error the scenario declares for LUN
# (the host fails every such request covering SECTOR, on every path); fails if none
mpio_lun_error() {
	awk -v l="$1" -v e="$2" '$1 == l && $3 == e { print $2, $4; found = 1; exit } END { exit !found }' "$MPIO_LUN_ERRORS"
}

# mpio_fail_count MAP: the sum of dm-multipath's per-path fail counts in MAP's status (each
# path's count grows every time the kernel fails it, and never shrinks)
mpio_fail_count() { mpio_groups "$1" | awk '{ n += $5 } END { print n + 0 }'; }

# mpio_failing_paths MAP: the paths the kernel logged "Failing path" for in MAP since the
# scenario started, space-separated (empty: none)
mpio_failing_paths() {
	mm=$(dmsetup info -c --noheadings -o major,minor --separator : "$1" 2>/dev/null | tr -d ' ')
	dmesg | awk -v m="multipath: $mm: Failing path" '/rapido-mpio: scenario .* starts/ { on = 1 }
		on && index($0, m) { p = $NF; sub(/\.$/, "", p); out = out (out ? " " : "") p }
		END { print out }'
}

# mpio_io_errors FROM TO: the errors SCSI counted on each path's device between I/O
# snapshots FROM and TO (mpio_io_snapshot), e.g. "8:0 +2 8:16 +2"
mpio_io_errors() {
	awk 'FILENAME == ARGV[1] { split($4, e, "="); n[$1] = e[2]; next }
		{ split($4, e, "="); printf "%s%s +%d", sep, $1, e[2] - n[$1]; sep = " " } END { print "" }' \
		"$MPIO_RUN/io-$1" "$MPIO_RUN/io-$2"
}
