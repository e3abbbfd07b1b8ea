import sys

from .build import use_compiled_build

# Measure what ``pip install`` installs (the mypyc-compiled wheel) unless --pure asks for
# the checkout's sources; this must happen before anything imports attesto_asgi.
if "--pure" not in sys.argv[1:]:
    use_compiled_build()

from .run import main

raise SystemExit(main())
