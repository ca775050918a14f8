"""rapido-mpio: boot a minimal initramfs in QEMU and check that dm-multipath fails over."""
