# shellcheck shell=sh
# Test only: PASS or FAIL by a draw from the guest's RNG.
draw=$(($(od -An -N1 -tu1 /dev/urandom) * 100 / 256))
if [ "$draw" -lt "$PASS_PERCENT" ]; then
	mpio_check coin PASS "drew $draw"
else
	mpio_check coin FAIL "drew $draw (pass below $PASS_PERCENT)"
fi
