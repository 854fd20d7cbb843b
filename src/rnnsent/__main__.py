from rnnsent.cli import main

raise SystemExit(main())
