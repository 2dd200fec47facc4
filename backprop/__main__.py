import sys

from backprop.cli import main

sys.exit(main())
