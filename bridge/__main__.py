from bridge.cli.dispatch import main

raise SystemExit(main())
