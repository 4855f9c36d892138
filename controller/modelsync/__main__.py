"""`python -m modelsync` is the same program as the `modelsync` command."""

from modelsync.cli.main import main

raise SystemExit(main())
