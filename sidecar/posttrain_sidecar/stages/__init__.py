"""One file per stage. Each exposes ``run(request, conn) -> (status, summary)``."""
