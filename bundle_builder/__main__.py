import sys

from bundle_builder.cli import main

sys.exit(main())
