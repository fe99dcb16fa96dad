"""``python -m archiver`` runs the same command line as the ``archiver`` script."""

from archiver.cli.main import main

raise SystemExit(main())
