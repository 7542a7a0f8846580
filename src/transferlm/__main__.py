import sys

from transferlm.cli.main import main

sys.exit(main())
