#: extends: kernel-warning
#: description: Test only. The same kernel message, allowed by the scenario.
#: kernel_log_allow: ["unknown target type"]
