"""Entry point of `python -m c2f.report`."""
import sys

from c2f.report.cli import main

sys.exit(main())
