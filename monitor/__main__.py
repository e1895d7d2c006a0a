"""`python -m monitor` is the `storywatch` command."""

from monitor.cli import main

raise SystemExit(main())
