import sys

from jaxfrag.sweep import main

sys.exit(main())
