"""``python -m model_filer``: the same as the ``model-filer`` command."""

from .cli import main

raise SystemExit(main())
