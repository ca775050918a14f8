from rapido_mpio.cli import main

raise SystemExit(main())
