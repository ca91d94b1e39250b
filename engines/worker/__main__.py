"""`python -m engines.worker FD`: started by the gateway's `WorkerEngine`, never by hand."""

from engines.worker.host import main

raise SystemExit(main())
