"""Local-development helpers: a private local Ray cluster with the app deployed on it, free ports,
and the process tree a command started.

For tests, benchmarks (`bench/`) and `make serve`-style local runs only. The production path
(`serve_app.app:build_app`, the deployments, `serve run` of a config) never imports this package.

- `serve_app.localdev.cluster`: the repo's paths, `free_port`, reading and merging a config's
  app args, and `start_cluster` / `ServeCluster.deploy` / `stop_cluster`.
- `serve_app.localdev.processes`: `/proc` readers: `process_tree`, `stat_fields`.
"""
