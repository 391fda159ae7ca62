from ramo.cli import main

raise SystemExit(main())
