import sys

from nullclient.cli import main

sys.exit(main())
