import sys

from postfix_nullclient.nullclient.cli import main

sys.exit(main())
