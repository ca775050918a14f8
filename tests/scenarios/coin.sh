# shellcheck shell=sh
#: description: >-
#:   Test only, never shipped: a verdict decided by a random draw in the guest (PASS with
#:   probability PASS_PERCENT), to show that repeat and bisect confirmation see a flip.
#: env: {PASS_PERCENT: 50}
# Test only: PASS or FAIL by a draw from the guest's RNG.
draw=$(($(od -An -N1 -tu1 /dev/urandom) * 100 / 256))
if [ "$draw" -lt "$PASS_PERCENT" ]; then
	mpio_check coin PASS "drew $draw"
else
	mpio_check coin FAIL "drew $draw (pass below $PASS_PERCENT)"
fi
