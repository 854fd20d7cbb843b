from rnnsent.cli.main import main

raise SystemExit(main())
