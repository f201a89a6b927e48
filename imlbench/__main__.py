import sys

from imlbench.cli import main

sys.exit(main())
