import sys

from dgcnet.cli import main

sys.exit(main())
