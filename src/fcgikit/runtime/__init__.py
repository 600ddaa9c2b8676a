"""Process-level helpers every runtime room shares (stdlib only): passing idle
connections between processes (`handoff`), processes left behind (`orphans`),
and prctl(2) (`prctl`). They belong to no room: the manager (spawn), the worker
and the CGI gateway import them from here, not from each other."""
