"""One module per lab service, named like its probe (``probes/<service>.py``): the server's
binaries, configuration and command line, readiness check, post-start steps and seeder, and
its declared :class:`~perisai.lab.spec.ServerSpec` ``SPEC``. The processes themselves are run
by :mod:`perisai.lab.supervisor`."""
