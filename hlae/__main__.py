import sys

from hlae.cli import main

sys.exit(main())
