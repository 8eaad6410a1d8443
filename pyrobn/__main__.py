from pyrobn.cli import main

raise SystemExit(main())
