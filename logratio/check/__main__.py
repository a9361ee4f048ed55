"""``python -m logratio.check``: the same as ``logratio check``."""

from .cli import main

__all__: list[str] = []

raise SystemExit(main())
