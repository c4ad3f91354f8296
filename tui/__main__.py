"""`python -m tui` runs the app (same as `genaptitude-trainer-tui`)."""
from .app import main

raise SystemExit(main())
