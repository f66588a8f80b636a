import sys

from masktrack.cli import main

sys.exit(main())
