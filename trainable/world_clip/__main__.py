"""``python -m dglrsis.trainable.world_clip``: regenerate the bundled world-clip weights."""

from .trainer import main

raise SystemExit(main())
