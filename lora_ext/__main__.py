import sys

from lora_ext.cli import main

sys.exit(main())
