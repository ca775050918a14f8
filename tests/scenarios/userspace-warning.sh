#: extends: kernel-warning
#: description: Test only. WARNING lines from userspace, which must not fail the run.
#: env: {KERNEL_WARNING: 0}
