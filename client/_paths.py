"""Find the event log's modules when the client runs from a checkout.

``eventlog`` lives in ``functions/`` (the layout the Lambda assets need), which the
Makefile and pytest put on ``sys.path``. So that ``python -m client`` also works
from the repository root without that, the folder is appended, last, only when
``eventlog`` cannot be imported otherwise.
"""

import importlib.util
import sys
from pathlib import Path

FUNCTIONS = Path(__file__).resolve().parent.parent / "functions"

if importlib.util.find_spec("eventlog") is None and FUNCTIONS.is_dir():
    sys.path.append(str(FUNCTIONS))
