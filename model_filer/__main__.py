"""``python -m model_filer``: the same as the ``model-filer`` command."""

from model_filer.cli import main

raise SystemExit(main())
