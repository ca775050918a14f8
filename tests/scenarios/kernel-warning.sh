# shellcheck shell=sh
#: description: Test only. A kernel message with WARNING in it, which must fail the run.
#: env: {KERNEL_WARNING: 1}
# Test only: messages with WARNING: in them, from userspace (on the console and through
# /dev/kmsg, as multipathd's "option ... is deprecated" would be) and, when KERNEL_WARNING
# is 1, from the kernel itself: dm logs the unknown target type it was given, verbatim.
echo "WARNING: option foo is deprecated (a userspace line on the console)"
echo "WARNING: option foo is deprecated (userspace, through /dev/kmsg)" > /dev/kmsg
if [ "$KERNEL_WARNING" = 1 ]; then
	dmsetup create mpio-warning --table "0 8 WARNING: x" 2>/dev/null
	provoked=kernel
else
	provoked=userspace
fi
mpio_check provoked PASS "$provoked"
