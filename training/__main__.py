import sys

from .lifetime import die_with_parent

die_with_parent()  # before the slow imports: a server killed meanwhile takes this process with it

from .cli import main  # noqa: E402

sys.exit(main())
