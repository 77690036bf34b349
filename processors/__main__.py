"""``python -m processors`` is the ``queast-integrations`` command."""

from __future__ import annotations

import sys

from processors.cli import main

sys.exit(main())
