import sys

from robustprune.cli import main

sys.exit(main())
